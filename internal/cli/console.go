package cli

import (
	"net/http"

	"github.com/keyhold/keyhold/internal/console"
	"github.com/keyhold/keyhold/internal/hsm"
	"github.com/keyhold/keyhold/internal/server"
)

// mountConsole serves the web console at /console/ in front of the API,
// running its actions through the API's own audited pipeline.
func mountConsole(api *server.Handler, cfg ServeConfig) (http.Handler, error) {
	var subnets []console.Subnet
	for _, s := range hsm.Subnets(cfg.Region) {
		subnets = append(subnets, console.Subnet{ID: s.ID, AvailabilityZone: s.AvailabilityZone})
	}
	c, err := console.New(console.Config{API: api, Region: cfg.Region, Subnets: subnets, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	return console.Mount(c, api), nil
}
