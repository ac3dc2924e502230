package main

import (
	"fmt"
	"io"

	"github.com/urfave/cli/v2"
)

// The scripts ask the binary itself for candidates through urfave/cli's
// hidden --generate-bash-completion flag: command names after `rcluster`,
// the command's flags after a word starting with "-". Two guards matter:
// urfave/cli turns completion off (and RUNS the command) when the words
// contain "--", so the scripts never pass "--" (a flag prefix is sent as
// "-" and filtered by the shell); and after a flag they offer files.
const bashCompletion = `# bash completion for rcluster.
# Load it in the current shell:  source <(rcluster completion bash)
# or install it:                 rcluster completion bash > /etc/bash_completion.d/rcluster
_rcluster_complete() {
  local cur="${COMP_WORDS[COMP_CWORD]}" prev="" w
  local -a words=("${COMP_WORDS[@]:0:COMP_CWORD}")
  COMPREPLY=()
  (( COMP_CWORD > 0 )) && prev="${COMP_WORDS[COMP_CWORD-1]}"
  for w in "${words[@]:1}"; do
    [[ "$w" == "--" ]] && return 0
  done
  [[ "$prev" == -* && "$cur" != -* ]] && return 0
  local opts
  if [[ "$cur" == -* ]]; then
    opts=$("${words[@]}" - --generate-bash-completion 2>/dev/null)
  else
    opts=$("${words[@]}" --generate-bash-completion 2>/dev/null)
  fi
  local IFS=$'\n'
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -o bashdefault -o default -F _rcluster_complete rcluster
`

const zshCompletion = `#compdef rcluster
# zsh completion for rcluster (needs compinit).
# Load it in the current shell:  source <(rcluster completion zsh)
# or install it as _rcluster in a directory of your $fpath.
_rcluster() {
  local -a opts
  local cur=${words[CURRENT]} prev=${words[CURRENT-1]}
  local -a before=("${(@)words[1,CURRENT-1]}")
  if (( ${before[(Ie)--]} )) || [[ "$prev" == -* && "$cur" != -* ]]; then
    _files
    return
  fi
  if [[ "$cur" == -* ]]; then
    opts=("${(@f)$(${before[@]} - --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${before[@]} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
compdef _rcluster rcluster
`

var completionShells = []string{"bash", "zsh", "fish"}

func completionCommand(stdout io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "completion",
		Usage: "print a shell completion script (bash, zsh or fish)",
		UsageText: "rcluster completion bash|zsh|fish\n\n" +
			"Examples:\n" +
			"   source <(rcluster completion bash)      # in ~/.bashrc\n" +
			"   source <(rcluster completion zsh)       # in ~/.zshrc, after compinit\n" +
			"   rcluster completion fish > ~/.config/fish/completions/rcluster.fish",
		BashComplete: func(c *cli.Context) {
			for _, s := range completionShells {
				fmt.Fprintln(c.App.Writer, s)
			}
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("completion needs one shell: bash, zsh or fish")
			}
			switch sh := c.Args().First(); sh {
			case "bash":
				_, err := io.WriteString(stdout, bashCompletion)
				return err
			case "zsh":
				_, err := io.WriteString(stdout, zshCompletion)
				return err
			case "fish":
				script, err := c.App.ToFishCompletion()
				if err != nil {
					return fmt.Errorf("fish completion: %w", err)
				}
				_, err = io.WriteString(stdout, script)
				return err
			default:
				msg := fmt.Sprintf("completion: unknown shell %q (want bash, zsh or fish)", sh)
				if s := suggest(sh, completionShells); s != "" {
					msg += ". " + fmt.Sprintf(cli.SuggestDidYouMeanTemplate, s)
				}
				return usagef("%s", msg)
			}
		},
	}
}
