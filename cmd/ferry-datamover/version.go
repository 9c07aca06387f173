package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/internal/version"
)

func newVersionCommand() *cobra.Command {
	var out output
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print ferry's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return usageError{err}
			}
			if out == "json" {
				return writeJSON(cmd.OutOrStdout(), map[string]string{"version": version.Version, "go": runtime.Version(), "platform": runtime.GOOS + "/" + runtime.GOARCH})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ferry-datamover %s (%s, %s/%s)\n", version.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
	out.bind(cmd.Flags())
	return cmd
}
