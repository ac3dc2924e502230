// Package confgen renders one redis.conf per node from the template
// (templates/redis.conf.tmpl, embedded; overridable by the spec).
package confgen

import "github.com/rcluster/rcluster/internal/spec"

// Render returns the redis.conf for node n of s.
func Render(s *spec.Spec, n spec.Node) ([]byte, error) { panic("unimplemented") }

// Write renders every node's config into s.ConfFile(port) (0600), creating
// the layout directories (0700): conf, run, log, db/redis_<port>. It returns
// the written paths in node order.
func Write(s *spec.Spec) ([]string, error) { panic("unimplemented") }
