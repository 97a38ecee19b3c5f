package hsm

import (
	"fmt"
	"sort"
)

// Subnet is one subnet of keyhold's default network: one private subnet per
// availability zone of the region, all in one VPC. The identifiers are
// derived from the region, so they are the same on every keyhold. The
// network is this host's loopback network (zone i is 127.100.i.0/24): an
// HSM listens at its ENI IP, which every process of the host reaches and
// no other host does (Config.ListenIP serves several hosts).
type Subnet struct {
	ID               string
	AvailabilityZone string
	VpcID            string
	CIDR             string
	index            int
}

// zoneLetters lists the availability zones of the regions keyhold knows;
// other regions get a, b and c.
var zoneLetters = map[string]string{
	"us-east-1":      "abcdef",
	"us-east-2":      "abc",
	"us-west-1":      "bc",
	"us-west-2":      "abcd",
	"eu-west-1":      "abc",
	"eu-central-1":   "abc",
	"ap-northeast-1": "acd",
	"ap-southeast-2": "abc",
}

// VpcID is the default VPC of region.
func VpcID(region string) string { return "vpc-" + hexID(17, "keyhold/vpc", region) }

// SecurityGroupID is the security group of a cluster.
func securityGroupID(clusterID string) string { return "sg-" + hexID(17, "keyhold/sg", clusterID) }

// Subnets lists the default network of region, ordered by zone.
func Subnets(region string) []Subnet {
	letters, ok := zoneLetters[region]
	if !ok {
		letters = "abc"
	}
	out := make([]Subnet, 0, len(letters))
	for i, l := range letters {
		az := region + string(l)
		out = append(out, Subnet{
			ID:               "subnet-" + hexID(17, "keyhold/subnet", az),
			AvailabilityZone: az,
			VpcID:            VpcID(region),
			CIDR:             fmt.Sprintf("127.100.%d.0/24", i),
			index:            i,
		})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].AvailabilityZone < out[b].AvailabilityZone })
	return out
}

func subnetByID(region, id string) (Subnet, bool) {
	for _, s := range Subnets(region) {
		if s.ID == id {
			return s, true
		}
	}
	return Subnet{}, false
}
