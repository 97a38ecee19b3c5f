// Package hsmapi is the cloudhsmv2 API (JSON 1.1, X-Amz-Target
// BaldrApiService.<Operation>, SigV4 signing name "cloudhsm"): wire structs
// validated against the service model, translated to internal/hsm calls and
// back.
//
// It holds no state and makes no decisions: the hsm package decides. It must
// never put a password other than the cluster's pre-activation PreCoPassword
// (which CloudHSM itself returns) into a response, and never leak an internal
// error's cause to the client.
package hsmapi

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/keyhold/keyhold/internal/awsjson"
	"github.com/keyhold/keyhold/internal/hsm"
)

//go:embed cloudhsmv2.json
var modelJSON []byte

// Exception names of the cloudhsmv2 model.
const (
	InvalidRequest = "CloudHsmInvalidRequestException"
	NotFound       = "CloudHsmResourceNotFoundException"
	AccessDenied   = "CloudHsmAccessDeniedException"
	Internal       = "CloudHsmInternalFailureException"
	ServiceErr     = "CloudHsmServiceException"
	TagErr         = "CloudHsmTagException"
	LimitExceeded  = "CloudHsmResourceLimitExceededException"
)

type api struct {
	m       *hsm.Manager
	region  string
	account string
	model   *awsjson.Model
}

// New builds the BaldrApiService operation table over m.
func New(m *hsm.Manager, region, accountID string) *awsjson.Service {
	model, err := awsjson.LoadModel(modelJSON)
	if err != nil {
		panic("hsmapi: embedded model: " + err.Error())
	}
	a := &api{m: m, region: region, account: accountID, model: model}
	op := func(name string, h func(context.Context, *awsjson.Call) (any, error)) awsjson.Operation {
		return awsjson.Operation{Name: name, Action: "cloudhsm:" + name, Handle: h, MaxBody: model.MaxInputBytes(name)}
	}
	return awsjson.NewService("BaldrApiService", "cloudhsm", mapError,
		op("CreateCluster", a.createCluster),
		op("DescribeClusters", a.describeClusters),
		op("InitializeCluster", a.initializeCluster),
		op("DeleteCluster", a.deleteCluster),
		op("CreateHsm", a.createHsm),
		op("DeleteHsm", a.deleteHsm),
		op("DescribeBackups", a.describeBackups),
		op("DeleteBackup", a.deleteBackup),
		op("RestoreBackup", a.restoreBackup),
		op("ModifyBackupAttributes", a.modifyBackupAttributes),
		op("TagResource", a.tagResource),
		op("UntagResource", a.untagResource),
		op("ListTags", a.listTags),
	)
}

// decode validates the body against the model; constraint violations are
// CloudHsmInvalidRequestException, the only client error cloudhsmv2 models.
func (a *api) decode(c *awsjson.Call, v any) error {
	err := a.model.DecodeInput(c.Operation, c.Body, v)
	var ae *awsjson.Error
	if errors.As(err, &ae) && ae.Type == awsjson.ValidationException {
		return awsjson.Errorf(InvalidRequest, 400, "%s", ae.Message)
	}
	return err
}

// mapError turns hsm errors into cloudhsmv2 exceptions.
func mapError(err error) *awsjson.Error {
	msg := err.Error()
	var he *hsm.Error
	if !errors.As(err, &he) {
		slog.Default().Error("cloudhsmv2: internal failure", "err", err)
		return awsjson.Errorf(Internal, 500, "The request failed because of an internal error. Try again.")
	}
	msg = he.Msg
	switch {
	case errors.Is(err, hsm.ErrClusterNotFound), errors.Is(err, hsm.ErrHSMNotFound), errors.Is(err, hsm.ErrBackupNotFound):
		return awsjson.Errorf(NotFound, 400, "%s", msg)
	case errors.Is(err, hsm.ErrTag):
		return awsjson.Errorf(TagErr, 400, "%s", msg)
	case errors.Is(err, hsm.ErrResourceLimit):
		return awsjson.Errorf(LimitExceeded, 400, "%s", msg)
	}
	return awsjson.Errorf(InvalidRequest, 400, "%s", msg)
}

// epoch renders a time as JSON 1.1 does: seconds since the epoch.
type epoch time.Time

func (e epoch) MarshalJSON() ([]byte, error) {
	t := time.Time(e)
	return []byte(strconv.FormatFloat(math.Round(float64(t.UnixMilli()))/1000, 'f', -1, 64)), nil
}

func ts(t time.Time) *epoch {
	if t.IsZero() {
		return nil
	}
	e := epoch(t)
	return &e
}

type tag struct {
	Key   string `json:"Key"`
	Value string `json:"Value"`
}

func toTags(in []tag) []hsm.Tag {
	out := make([]hsm.Tag, len(in))
	for i, t := range in {
		out[i] = hsm.Tag{Key: t.Key, Value: t.Value}
	}
	return out
}

func fromTags(in []hsm.Tag) []tag {
	if len(in) == 0 {
		return nil
	}
	out := make([]tag, len(in))
	for i, t := range in {
		out[i] = tag{t.Key, t.Value}
	}
	return out
}

type retention struct {
	Type  string `json:"Type,omitempty"`
	Value string `json:"Value,omitempty"`
}

type wireHsm struct {
	AvailabilityZone string `json:"AvailabilityZone,omitempty"`
	ClusterID        string `json:"ClusterId,omitempty"`
	SubnetID         string `json:"SubnetId,omitempty"`
	EniID            string `json:"EniId,omitempty"`
	EniIP            string `json:"EniIp,omitempty"`
	HsmID            string `json:"HsmId"`
	HsmType          string `json:"HsmType,omitempty"`
	State            string `json:"State,omitempty"`
	StateMessage     string `json:"StateMessage,omitempty"`
}

type certificates struct {
	ClusterCsr         string `json:"ClusterCsr,omitempty"`
	ClusterCertificate string `json:"ClusterCertificate,omitempty"`
}

type wireCluster struct {
	BackupPolicy          string            `json:"BackupPolicy"`
	BackupRetentionPolicy *retention        `json:"BackupRetentionPolicy,omitempty"`
	ClusterID             string            `json:"ClusterId"`
	CreateTimestamp       *epoch            `json:"CreateTimestamp,omitempty"`
	Hsms                  []wireHsm         `json:"Hsms"`
	HsmType               string            `json:"HsmType"`
	PreCoPassword         string            `json:"PreCoPassword,omitempty"`
	SecurityGroup         string            `json:"SecurityGroup,omitempty"`
	SourceBackupID        string            `json:"SourceBackupId,omitempty"`
	State                 string            `json:"State"`
	StateMessage          string            `json:"StateMessage,omitempty"`
	SubnetMapping         map[string]string `json:"SubnetMapping"`
	VpcID                 string            `json:"VpcId"`
	NetworkType           string            `json:"NetworkType,omitempty"`
	Certificates          certificates      `json:"Certificates"`
	TagList               []tag             `json:"TagList,omitempty"`
	Mode                  string            `json:"Mode,omitempty"`
}

func wireHsmOf(h hsm.HSM) wireHsm {
	return wireHsm{AvailabilityZone: h.AvailabilityZone, ClusterID: h.ClusterID, SubnetID: h.SubnetID, EniID: h.EniID,
		EniIP: h.EniIP, HsmID: h.ID, HsmType: h.HsmType, State: h.State, StateMessage: h.StateMessage}
}

func wireClusterOf(c hsm.Cluster) wireCluster {
	w := wireCluster{BackupPolicy: "DEFAULT", BackupRetentionPolicy: &retention{Type: "DAYS", Value: strconv.Itoa(c.RetentionDays)},
		ClusterID: c.ID, CreateTimestamp: ts(c.Created), Hsms: []wireHsm{}, HsmType: c.HsmType,
		PreCoPassword: string(c.PreCoPassword), SecurityGroup: c.SecurityGroup, SourceBackupID: c.SourceBackupID,
		State: c.State, StateMessage: c.StateMessage, SubnetMapping: c.SubnetMapping, VpcID: c.VpcID,
		NetworkType: c.NetworkType, TagList: fromTags(c.Tags), Mode: c.Mode,
		Certificates: certificates{ClusterCsr: c.Certificates.ClusterCSR, ClusterCertificate: c.Certificates.ClusterCertificate}}
	for _, h := range c.HSMs {
		w.Hsms = append(w.Hsms, wireHsmOf(h))
	}
	return w
}

type wireBackup struct {
	BackupID        string `json:"BackupId"`
	BackupArn       string `json:"BackupArn,omitempty"`
	BackupState     string `json:"BackupState,omitempty"`
	ClusterID       string `json:"ClusterId,omitempty"`
	CreateTimestamp *epoch `json:"CreateTimestamp,omitempty"`
	NeverExpires    bool   `json:"NeverExpires"`
	SourceRegion    string `json:"SourceRegion,omitempty"`
	SourceBackup    string `json:"SourceBackup,omitempty"`
	SourceCluster   string `json:"SourceCluster,omitempty"`
	DeleteTimestamp *epoch `json:"DeleteTimestamp,omitempty"`
	TagList         []tag  `json:"TagList,omitempty"`
	HsmType         string `json:"HsmType,omitempty"`
	Mode            string `json:"Mode,omitempty"`
}

func (a *api) wireBackupOf(b hsm.Backup) wireBackup {
	return wireBackup{BackupID: b.ID, BackupArn: fmt.Sprintf("arn:aws:cloudhsm:%s:%s:backup/%s", a.region, a.account, b.ID),
		BackupState: b.State, ClusterID: b.ClusterID, CreateTimestamp: ts(b.Created), NeverExpires: b.NeverExpires,
		SourceRegion: b.SourceRegion, SourceBackup: b.SourceBackup, SourceCluster: b.SourceCluster,
		DeleteTimestamp: ts(b.DeleteTime), TagList: fromTags(b.Tags), HsmType: b.HsmType, Mode: b.Mode}
}

func (a *api) createCluster(ctx context.Context, c *awsjson.Call) (any, error) {
	var in struct {
		BackupRetentionPolicy *retention
		HsmType               string
		SourceBackupId        string
		SubnetIds             []string
		NetworkType           string
		TagList               []tag
		Mode                  string
	}
	if err := a.decode(c, &in); err != nil {
		return nil, err
	}
	days := 0
	if in.BackupRetentionPolicy != nil && in.BackupRetentionPolicy.Value != "" {
		days, _ = strconv.Atoi(in.BackupRetentionPolicy.Value)
		if days == 0 {
			return nil, awsjson.Errorf(InvalidRequest, 400, "The backup retention period must be between 7 and 379 days.")
		}
	}
	cl, err := a.m.CreateCluster(ctx, hsm.CreateClusterInput{HsmType: in.HsmType, SubnetIDs: in.SubnetIds,
		SourceBackupID: in.SourceBackupId, Mode: in.Mode, NetworkType: in.NetworkType, RetentionDays: days, Tags: toTags(in.TagList)})
	if err != nil {
		return nil, err
	}
	return map[string]any{"Cluster": wireClusterOf(cl)}, nil
}

func filters(f map[string][]string, allowed ...string) error {
	for k := range f {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			return awsjson.Errorf(InvalidRequest, 400, "Invalid filter %q. Valid filters: %v.", k, allowed)
		}
	}
	return nil
}

func (a *api) describeClusters(ctx context.Context, c *awsjson.Call) (any, error) {
	var in struct {
		Filters    map[string][]string
		NextToken  string
		MaxResults int
	}
	if err := a.decode(c, &in); err != nil {
		return nil, err
	}
	if err := filters(in.Filters, "clusterIds", "states", "vpcIds"); err != nil {
		return nil, err
	}
	cs, next, err := a.m.DescribeClusters(ctx, hsm.ClusterFilter{IDs: in.Filters["clusterIds"], States: in.Filters["states"],
		VpcIDs: in.Filters["vpcIds"]}, in.NextToken, in.MaxResults)
	if err != nil {
		return nil, err
	}
	out := struct {
		Clusters  []wireCluster
		NextToken string `json:",omitempty"`
	}{Clusters: []wireCluster{}, NextToken: next}
	for _, cl := range cs {
		out.Clusters = append(out.Clusters, wireClusterOf(cl))
	}
	return out, nil
}

func (a *api) initializeCluster(ctx context.Context, c *awsjson.Call) (any, error) {
	var in struct{ ClusterId, SignedCert, TrustAnchor string }
	if err := a.decode(c, &in); err != nil {
		return nil, err
	}
	st, msg, err := a.m.InitializeCluster(ctx, in.ClusterId, in.SignedCert, in.TrustAnchor)
	if err != nil {
		return nil, err
	}
	return map[string]string{"State": st, "StateMessage": msg}, nil
}

func (a *api) deleteCluster(ctx context.Context, c *awsjson.Call) (any, error) {
	var in struct{ ClusterId string }
	if err := a.decode(c, &in); err != nil {
		return nil, err
	}
	cl, err := a.m.DeleteCluster(ctx, in.ClusterId)
	if err != nil {
		return nil, err
	}
	return map[string]any{"Cluster": wireClusterOf(cl)}, nil
}

func (a *api) createHsm(ctx context.Context, c *awsjson.Call) (any, error) {
	var in struct{ ClusterId, AvailabilityZone, IpAddress string }
	if err := a.decode(c, &in); err != nil {
		return nil, err
	}
	h, err := a.m.CreateHsm(ctx, in.ClusterId, in.AvailabilityZone, in.IpAddress)
	if err != nil {
		return nil, err
	}
	return map[string]any{"Hsm": wireHsmOf(h)}, nil
}

func (a *api) deleteHsm(ctx context.Context, c *awsjson.Call) (any, error) {
	var in struct{ ClusterId, HsmId, EniId, EniIp string }
	if err := a.decode(c, &in); err != nil {
		return nil, err
	}
	id, err := a.m.DeleteHsm(ctx, in.ClusterId, in.HsmId, in.EniId, in.EniIp)
	if err != nil {
		return nil, err
	}
	return map[string]string{"HsmId": id}, nil
}

func (a *api) describeBackups(ctx context.Context, c *awsjson.Call) (any, error) {
	var in struct {
		Filters       map[string][]string
		NextToken     string
		MaxResults    int
		Shared        bool
		SortAscending bool
	}
	if err := a.decode(c, &in); err != nil {
		return nil, err
	}
	if err := filters(in.Filters, "backupIds", "sourceBackupIds", "clusterIds", "states", "neverExpires"); err != nil {
		return nil, err
	}
	f := hsm.BackupFilter{IDs: in.Filters["backupIds"], SourceBackupIDs: in.Filters["sourceBackupIds"],
		ClusterIDs: in.Filters["clusterIds"], States: in.Filters["states"]}
	if v := in.Filters["neverExpires"]; len(v) > 0 {
		b, err := strconv.ParseBool(v[0])
		if err != nil {
			return nil, awsjson.Errorf(InvalidRequest, 400, "The neverExpires filter must be true or false.")
		}
		f.NeverExpires = &b
	}
	bs, next, err := a.m.DescribeBackups(ctx, f, in.SortAscending, in.NextToken, in.MaxResults)
	if err != nil {
		return nil, err
	}
	out := struct {
		Backups   []wireBackup
		NextToken string `json:",omitempty"`
	}{Backups: []wireBackup{}, NextToken: next}
	for _, b := range bs {
		out.Backups = append(out.Backups, a.wireBackupOf(b))
	}
	return out, nil
}

func (a *api) backupOp(ctx context.Context, c *awsjson.Call, fn func(context.Context, string) (hsm.Backup, error)) (any, error) {
	var in struct{ BackupId string }
	if err := a.decode(c, &in); err != nil {
		return nil, err
	}
	b, err := fn(ctx, in.BackupId)
	if err != nil {
		return nil, err
	}
	return map[string]any{"Backup": a.wireBackupOf(b)}, nil
}

func (a *api) deleteBackup(ctx context.Context, c *awsjson.Call) (any, error) {
	return a.backupOp(ctx, c, a.m.DeleteBackup)
}

func (a *api) restoreBackup(ctx context.Context, c *awsjson.Call) (any, error) {
	return a.backupOp(ctx, c, a.m.RestoreBackup)
}

func (a *api) modifyBackupAttributes(ctx context.Context, c *awsjson.Call) (any, error) {
	var in struct {
		BackupId     string
		NeverExpires bool
	}
	if err := a.decode(c, &in); err != nil {
		return nil, err
	}
	b, err := a.m.ModifyBackupAttributes(ctx, in.BackupId, in.NeverExpires)
	if err != nil {
		return nil, err
	}
	return map[string]any{"Backup": a.wireBackupOf(b)}, nil
}

func (a *api) tagResource(ctx context.Context, c *awsjson.Call) (any, error) {
	var in struct {
		ResourceId string
		TagList    []tag
	}
	if err := a.decode(c, &in); err != nil {
		return nil, err
	}
	return struct{}{}, a.m.TagResource(ctx, in.ResourceId, toTags(in.TagList))
}

func (a *api) untagResource(ctx context.Context, c *awsjson.Call) (any, error) {
	var in struct {
		ResourceId string
		TagKeyList []string
	}
	if err := a.decode(c, &in); err != nil {
		return nil, err
	}
	return struct{}{}, a.m.UntagResource(ctx, in.ResourceId, in.TagKeyList)
}

func (a *api) listTags(ctx context.Context, c *awsjson.Call) (any, error) {
	var in struct {
		ResourceId string
		NextToken  string
		MaxResults int
	}
	if err := a.decode(c, &in); err != nil {
		return nil, err
	}
	tags, next, err := a.m.ListTags(ctx, in.ResourceId, in.NextToken, in.MaxResults)
	if err != nil {
		return nil, err
	}
	out := struct {
		TagList   []tag
		NextToken string `json:",omitempty"`
	}{TagList: fromTags(tags), NextToken: next}
	if out.TagList == nil {
		out.TagList = []tag{}
	}
	return out, nil
}
