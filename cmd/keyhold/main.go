// Command keyhold is a self-hosted key management service that speaks the
// AWS KMS API. See the README for the commands.
package main

import (
	"os"

	"github.com/keyhold/keyhold/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
