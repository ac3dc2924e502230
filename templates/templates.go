// Package templates embeds rcluster's default file templates. It lives at
// the repository root because go:embed cannot reach parent directories.
package templates

import _ "embed"

// RedisConf is the default per-node redis.conf template (text/template),
// rendered by internal/confgen.
//
//go:embed redis.conf.tmpl
var RedisConf string
