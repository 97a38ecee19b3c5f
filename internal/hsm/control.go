package hsm

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Cluster is a cluster as DescribeClusters shows it.
type Cluster struct {
	ID             string
	State          string
	StateMessage   string
	HsmType        string
	Mode           string
	NetworkType    string
	VpcID          string
	SecurityGroup  string
	SourceBackupID string
	// PreCoPassword is shown until the cluster is activated, as CloudHSM does.
	PreCoPassword Password
	RetentionDays int
	Created       time.Time
	SubnetMapping map[string]string
	HSMs          []HSM
	Certificates  Certificates
	Tags          []Tag
}

// Certificates of a cluster: the CSR while UNINITIALIZED, then the cluster
// certificate the owner's CA signed.
type Certificates struct {
	ClusterCSR         string
	ClusterCertificate string
}

// HSM is an HSM as cloudhsmv2 shows it.
type HSM struct {
	ID, ClusterID, AvailabilityZone, SubnetID, EniID, EniIP, HsmType, State, StateMessage string
}

// Backup is a backup as DescribeBackups shows it.
type Backup struct {
	ID, State, ClusterID, HsmType, Mode string
	Created                             time.Time
	DeleteTime                          time.Time
	NeverExpires                        bool
	SourceBackup, SourceCluster         string
	SourceRegion                        string
	Tags                                []Tag
}

// CreateClusterInput is the request of CreateCluster.
type CreateClusterInput struct {
	HsmType        string
	SubnetIDs      []string
	SourceBackupID string // a backup ID or ARN
	Mode           string // FIPS (default) or NON_FIPS
	NetworkType    string // IPV4 (default) or DUALSTACK
	RetentionDays  int    // default 90
	Tags           []Tag
}

// HsmTypes are the HSM types a cluster may be created with.
var HsmTypes = []string{"hsm1.medium", "hsm2m.medium"}

func clusterView(r ClusterRecord) Cluster {
	c := Cluster{ID: r.ID, State: r.State, StateMessage: r.StateMessage, HsmType: r.HsmType, Mode: r.Mode,
		NetworkType: r.NetworkType, VpcID: r.VpcID, SecurityGroup: r.SecurityGroup, SourceBackupID: r.SourceBackupID,
		RetentionDays: r.RetentionDays, Created: r.Created, SubnetMapping: r.SubnetMapping, Tags: r.Tags}
	switch r.State {
	case ClusterCreateInProgress, ClusterUninitialized, ClusterInitializeInProgress, ClusterInitialized:
		c.PreCoPassword = r.PreCoPassword
	}
	if r.State == ClusterUninitialized {
		c.Certificates.ClusterCSR = r.CSRPEM
	}
	c.Certificates.ClusterCertificate = r.ClusterCertPEM
	for _, h := range r.HSMs {
		c.HSMs = append(c.HSMs, HSM{ID: h.ID, ClusterID: r.ID, AvailabilityZone: h.AvailabilityZone, SubnetID: h.SubnetID,
			EniID: h.EniID, EniIP: h.EniIP, HsmType: r.HsmType, State: h.State, StateMessage: h.StateMessage})
	}
	return c
}

func backupView(b BackupRecord) Backup {
	return Backup{ID: b.ID, State: b.State, ClusterID: b.ClusterID, HsmType: b.HsmType, Mode: b.Mode, Created: b.Created,
		DeleteTime: b.DeleteTime, NeverExpires: b.NeverExpires, SourceBackup: b.SourceBackup, SourceCluster: b.SourceCluster,
		SourceRegion: b.SourceRegion, Tags: b.Tags}
}

// Region is the Manager's region.
func (m *Manager) Region() string { return m.cfg.Region }

// Subnets lists the default network of the Manager's region.
func (m *Manager) Subnets() []Subnet { return Subnets(m.cfg.Region) }

// CreateCluster records a new cluster in CREATE_IN_PROGRESS and prepares
// its token in the background: UNINITIALIZED for a new cluster, ACTIVE for
// one created from a backup (it carries the backup's certificate, keys and
// users).
func (m *Manager) CreateCluster(ctx context.Context, in CreateClusterInput) (Cluster, error) {
	if !slices.Contains(HsmTypes, in.HsmType) {
		return Cluster{}, invalid("HsmType %s is not supported. Supported types: %s.", in.HsmType, strings.Join(HsmTypes, ", "))
	}
	if len(in.SubnetIDs) == 0 || len(in.SubnetIDs) > 10 {
		return Cluster{}, invalid("Specify between 1 and 10 subnets.")
	}
	mapping := map[string]string{}
	for _, id := range in.SubnetIDs {
		s, ok := subnetByID(m.cfg.Region, id)
		if !ok {
			return Cluster{}, invalid("Subnet %s does not exist in %s. Run `keyhold hsm subnets` to list the subnets.", id, m.cfg.Region)
		}
		if _, dup := mapping[s.AvailabilityZone]; dup {
			return Cluster{}, invalid("Only one subnet per Availability Zone is allowed; %s has more than one.", s.AvailabilityZone)
		}
		mapping[s.AvailabilityZone] = s.ID
	}
	mode := in.Mode
	if mode == "" {
		mode = "FIPS"
	}
	if mode != "FIPS" && mode != "NON_FIPS" {
		return Cluster{}, invalid("Mode must be FIPS or NON_FIPS.")
	}
	nt := in.NetworkType
	if nt == "" {
		nt = "IPV4"
	}
	if in.RetentionDays == 0 {
		in.RetentionDays = 90
	}
	if in.RetentionDays < 7 || in.RetentionDays > 379 {
		return Cluster{}, invalid("The backup retention period must be between 7 and 379 days.")
	}
	if err := checkTags(in.Tags); err != nil {
		return Cluster{}, err
	}
	id := newID("cluster")
	rec := &ClusterRecord{ID: id, State: ClusterCreateInProgress, HsmType: in.HsmType, Mode: mode, NetworkType: nt,
		VpcID: VpcID(m.cfg.Region), SecurityGroup: securityGroupID(id), SubnetMapping: mapping,
		RetentionDays: in.RetentionDays, Created: m.now(), Tags: in.Tags, TokenLabel: id,
		TokenDir: filepath.Join(m.reg.ClusterDir(id), "tokens"), User: UserRecord{}}
	if in.SourceBackupID != "" {
		bid := in.SourceBackupID
		if i := strings.LastIndex(bid, "/"); i >= 0 {
			bid = bid[i+1:]
		}
		b, err := m.reg.GetBackup(ctx, bid)
		if err != nil {
			return Cluster{}, err
		}
		if b.State != BackupReady {
			return Cluster{}, invalid("Backup %s is in state %s; only a READY backup can be restored.", bid, b.State)
		}
		rec.SourceBackupID = bid
		rec.HsmType, rec.Mode = b.HsmType, b.Mode
		rec.TokenLabel = b.TokenLabel
	} else {
		rec.PreCoPassword = randomPassword(32)
	}
	if err := m.reg.CreateCluster(ctx, rec); err != nil {
		return Cluster{}, err
	}
	m.async(func() { m.finishCreateCluster(id) })
	return clusterView(*rec), nil
}

func (m *Manager) finishCreateCluster(id string) {
	if !m.pause() {
		return
	}
	ctx := m.ctx
	rec, err := m.reg.GetCluster(ctx, id)
	if err != nil || rec.State != ClusterCreateInProgress {
		return
	}
	fail := func(err error) {
		m.log.Error("hsm: create cluster", "cluster", id, "err", err)
		m.reg.UpdateCluster(ctx, id, func(r *ClusterRecord) error {
			r.StateMessage = "Cluster creation failed; it will be retried when keyhold restarts."
			return nil
		})
	}
	dir := m.reg.ClusterDir(id)
	os.RemoveAll(rec.TokenDir) // a half-made token from an interrupted attempt
	if err := writeSoftHSMConf(dir, rec.TokenDir); err != nil {
		fail(err)
		return
	}
	if rec.SourceBackupID != "" {
		b, err := m.reg.GetBackup(ctx, rec.SourceBackupID)
		if err == nil {
			err = copyDir(filepath.Join(m.reg.BackupDir(b.ID), "tokens"), rec.TokenDir)
		}
		if err != nil {
			fail(err)
			return
		}
		_, err = m.reg.UpdateCluster(ctx, id, func(r *ClusterRecord) error {
			r.State, r.StateMessage = ClusterActive, ""
			r.ClusterCertPEM, r.TrustAnchorPEM = b.ClusterCertPEM, b.TrustAnchorPEM
			r.User = UserRecord{Name: b.User.Name, Exists: b.User.Exists}
			r.LastBackup = m.now()
			return nil
		})
		if err != nil {
			fail(err)
		}
		return
	}
	err = withTempDaemon(ctx, m.spec(rec), func(cl *client) error {
		_, err := cl.call(ctx, &request{Op: opInitToken, PIN: rec.PreCoPassword})
		return err
	})
	if err != nil {
		fail(err)
		return
	}
	m.reg.UpdateCluster(ctx, id, func(r *ClusterRecord) error {
		if r.State == ClusterCreateInProgress {
			r.State, r.StateMessage = ClusterUninitialized, ""
		}
		return nil
	})
}

// DescribeClusters lists clusters matching the filter, a page at a time.
type ClusterFilter struct {
	IDs, States, VpcIDs []string
}

func (m *Manager) DescribeClusters(ctx context.Context, f ClusterFilter, nextToken string, max int) ([]Cluster, string, error) {
	recs, err := m.reg.ListClusters(ctx)
	if err != nil {
		return nil, "", err
	}
	var all []Cluster
	for _, r := range recs {
		if len(f.IDs) > 0 && !slices.Contains(f.IDs, r.ID) ||
			len(f.States) > 0 && !slices.Contains(f.States, r.State) ||
			len(f.VpcIDs) > 0 && !slices.Contains(f.VpcIDs, r.VpcID) {
			continue
		}
		all = append(all, clusterView(r))
	}
	return page(all, func(c Cluster) string { return c.ID }, nextToken, max, 25)
}

// page returns the items after the one named by nextToken.
func page[T any](all []T, id func(T) string, nextToken string, max, limit int) ([]T, string, error) {
	if max <= 0 || max > limit {
		max = limit
	}
	start := 0
	if nextToken != "" {
		b, err := base64.RawURLEncoding.DecodeString(nextToken)
		if err != nil {
			return nil, "", invalid("The NextToken is not valid.")
		}
		start = -1
		for i, it := range all {
			if id(it) == string(b) {
				start = i + 1
				break
			}
		}
		if start < 0 {
			return nil, "", invalid("The NextToken is not valid.")
		}
	}
	end := min(start+max, len(all))
	out := all[start:end]
	next := ""
	if end < len(all) && end > 0 {
		next = base64.RawURLEncoding.EncodeToString([]byte(id(all[end-1])))
	}
	return out, next, nil
}

// InitializeCluster checks the signed cluster certificate and trust anchor
// and moves the cluster to INITIALIZE_IN_PROGRESS, then INITIALIZED.
func (m *Manager) InitializeCluster(ctx context.Context, id, signedCert, trustAnchor string) (state, message string, err error) {
	rec, err := m.reg.UpdateCluster(ctx, id, func(r *ClusterRecord) error {
		if r.State != ClusterUninitialized {
			return invalid("Cluster %s is in state %s; only an UNINITIALIZED cluster can be initialized.", id, r.State)
		}
		if r.CSRPEM == "" {
			return invalid("Cluster %s has no CSR yet: create an HSM first.", id)
		}
		if err := checkInitialize(r.CSRPEM, signedCert, trustAnchor, m.now()); err != nil {
			return err
		}
		r.ClusterCertPEM, r.TrustAnchorPEM = signedCert, trustAnchor
		r.State, r.StateMessage = ClusterInitializeInProgress, "Cluster is initializing. State will change to INITIALIZED upon completion."
		return nil
	})
	if err != nil {
		return "", "", err
	}
	m.async(func() { m.setClusterState(id, ClusterInitializeInProgress, ClusterInitialized, "Cluster initialized.") })
	return rec.State, rec.StateMessage, nil
}

// CreateHsm adds an HSM in an availability zone of the cluster. It is
// CREATE_IN_PROGRESS until its process answers; the first HSM of a new
// cluster generates the cluster's identity key and CSR in the token.
func (m *Manager) CreateHsm(ctx context.Context, clusterID, az, ip string) (HSM, error) {
	var h HSMRecord
	rec, err := m.reg.UpdateCluster(ctx, clusterID, func(r *ClusterRecord) error {
		switch r.State {
		case ClusterUninitialized, ClusterInitialized, ClusterActive, ClusterDegraded:
		case ClusterDeleted:
			return clusterNotFound(clusterID)
		default:
			return invalid("Cluster %s is in state %s; HSMs cannot be added now.", clusterID, r.State)
		}
		subnetID, ok := r.SubnetMapping[az]
		if !ok {
			return invalid("Cluster %s has no subnet in Availability Zone %s.", clusterID, az)
		}
		if len(r.HSMs) >= 28 {
			return errf(ErrResourceLimit, "Cluster %s already has the maximum of 28 HSMs.", clusterID)
		}
		sn, _ := subnetByID(m.cfg.Region, subnetID)
		prefix := netip.MustParsePrefix(sn.CIDR)
		used := map[string]bool{}
		for _, o := range r.HSMs {
			used[o.EniIP] = true
		}
		if ip != "" {
			a, err := netip.ParseAddr(ip)
			if err != nil || !prefix.Contains(a) {
				return invalid("IpAddress %s is not in subnet %s (%s).", ip, subnetID, sn.CIDR)
			}
			if b := a.As4(); b[3] < 4 || b[3] == 255 {
				return invalid("IpAddress %s is reserved in subnet %s.", ip, subnetID)
			}
			if used[ip] {
				return invalid("IpAddress %s is already in use.", ip)
			}
		} else {
			for {
				r.NextEniHost++
				host := 10 + r.NextEniHost%240
				b := prefix.Addr().As4()
				b[3] = byte(host)
				ip = netip.AddrFrom4(b).String()
				if !used[ip] {
					break
				}
			}
		}
		hid := newID("hsm")
		h = HSMRecord{ID: hid, AvailabilityZone: az, SubnetID: subnetID, EniID: "eni-" + hexID(17, "keyhold/eni", hid),
			EniIP: ip, State: HSMCreateInProgress, Created: m.now()}
		r.HSMs = append(r.HSMs, h)
		return nil
	})
	if err != nil {
		return HSM{}, err
	}
	m.async(func() { m.finishCreateHSM(clusterID, h.ID) })
	return HSM{ID: h.ID, ClusterID: clusterID, AvailabilityZone: az, SubnetID: h.SubnetID, EniID: h.EniID, EniIP: h.EniIP,
		HsmType: rec.HsmType, State: h.State}, nil
}

func (m *Manager) finishCreateHSM(clusterID, hsmID string) {
	if !m.claim(hsmID) {
		return
	}
	defer m.unclaim(hsmID)
	if !m.pause() {
		return
	}
	ctx := m.ctx
	rec, err := m.reg.GetCluster(ctx, clusterID)
	if err != nil || !m.owns(rec) {
		// The replica that owns the cluster's token starts it (reconcile).
		return
	}
	if i := slices.IndexFunc(rec.HSMs, func(h HSMRecord) bool { return h.ID == hsmID }); i < 0 || rec.HSMs[i].State != HSMCreateInProgress {
		return
	}
	m.csrMu.Lock()
	rec, err = m.reg.GetCluster(ctx, clusterID) // another HSM may have made the CSR meanwhile
	if err != nil {
		m.csrMu.Unlock()
		return
	}
	if rec.State == ClusterUninitialized && rec.CSRPEM == "" {
		// The first HSM makes the cluster identity key and CSR. It runs in
		// a daemon of its own, so the SO login never meets a CU login.
		var der []byte
		err := withTempDaemon(ctx, m.spec(rec), func(cl *client) error {
			resp, err := cl.call(ctx, &request{Op: opCSR, PIN: rec.PreCoPassword, Label: rec.ID})
			if err == nil {
				der = resp.Data
			}
			return err
		})
		if err != nil {
			m.log.Error("hsm: cluster CSR", "cluster", clusterID, "err", err)
			m.setHSMState(clusterID, hsmID, HSMDegraded, "The HSM could not generate the cluster CSR.")
			m.csrMu.Unlock()
			return
		}
		m.reg.UpdateCluster(ctx, clusterID, func(r *ClusterRecord) error {
			if r.CSRPEM == "" {
				r.CSRPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
			}
			return nil
		})
	}
	m.csrMu.Unlock()
	if err := m.startHSM(ctx, rec, hsmID); err != nil {
		m.log.Error("hsm: start HSM", "cluster", clusterID, "hsm", hsmID, "err", err)
		return
	}
	if rec.State == ClusterActive || rec.State == ClusterDegraded {
		if _, err := m.CreateBackup(ctx, clusterID); err != nil {
			m.log.Warn("hsm: backup after CreateHsm", "cluster", clusterID, "err", err)
		}
	}
}

// DeleteHsm removes an HSM named by its ID, ENI ID or ENI address.
func (m *Manager) DeleteHsm(ctx context.Context, clusterID, hsmID, eniID, eniIP string) (string, error) {
	if hsmID == "" && eniID == "" && eniIP == "" {
		return "", invalid("Specify the HsmId, EniId or EniIp of the HSM to delete.")
	}
	var found string
	_, err := m.reg.UpdateCluster(ctx, clusterID, func(r *ClusterRecord) error {
		if r.State == ClusterDeleted {
			return clusterNotFound(clusterID)
		}
		for i, h := range r.HSMs {
			if (hsmID == "" || h.ID == hsmID) && (eniID == "" || h.EniID == eniID) && (eniIP == "" || h.EniIP == eniIP) {
				if h.State == HSMDeleteInProgress {
					return invalid("HSM %s is already being deleted.", h.ID)
				}
				if h.State == HSMCreateInProgress {
					return invalid("HSM %s is being created; delete it when it is ACTIVE.", h.ID)
				}
				r.HSMs[i].State, r.HSMs[i].StateMessage = HSMDeleteInProgress, "HSM is being deleted."
				found = h.ID
				return nil
			}
		}
		return errf(ErrHSMNotFound, "No HSM in cluster %s matches the request.", clusterID)
	})
	if err != nil {
		return "", err
	}
	m.async(func() { m.finishDeleteHSM(clusterID, found) })
	return found, nil
}

func (m *Manager) finishDeleteHSM(clusterID, hsmID string) {
	rec, err := m.reg.GetCluster(context.Background(), clusterID)
	if err != nil || !m.owns(rec) {
		// The replica that runs the HSM stops it (reconcile).
		return
	}
	if !m.claim(hsmID) {
		return
	}
	defer m.unclaim(hsmID)
	m.stopProc(hsmID)
	if !m.pause() {
		return
	}
	m.reg.UpdateCluster(context.Background(), clusterID, func(r *ClusterRecord) error {
		r.HSMs = slices.DeleteFunc(r.HSMs, func(h HSMRecord) bool { return h.ID == hsmID })
		recomputeClusterState(r)
		return nil
	})
}

// DeleteCluster deletes a cluster that has no HSMs: DELETE_IN_PROGRESS, then
// DELETED. Its backups remain.
func (m *Manager) DeleteCluster(ctx context.Context, id string) (Cluster, error) {
	rec, err := m.reg.UpdateCluster(ctx, id, func(r *ClusterRecord) error {
		switch r.State {
		case ClusterDeleted, ClusterDeleteInProgress:
			return clusterNotFound(id)
		case ClusterCreateInProgress, ClusterInitializeInProgress:
			return invalid("Cluster %s is in state %s and cannot be deleted now.", id, r.State)
		}
		if len(r.HSMs) > 0 {
			return invalid("Cluster %s has HSMs. Delete all HSMs before you delete the cluster.", id)
		}
		r.State, r.StateMessage = ClusterDeleteInProgress, "Cluster is being deleted."
		r.User.LoggedInBy = ""
		return nil
	})
	if err != nil {
		return Cluster{}, err
	}
	m.mu.Lock()
	for s := range m.sessions[id] {
		s.invalidate()
	}
	delete(m.sessions, id)
	m.mu.Unlock()
	m.async(func() { m.finishDeleteCluster(id) })
	return clusterView(rec), nil
}

func (m *Manager) finishDeleteCluster(id string) {
	if !m.pause() {
		return
	}
	// The token goes first, so that DELETED means its keys are gone.
	if rec, err := m.reg.GetCluster(context.Background(), id); err == nil && rec.TokenDir != "" {
		if err := os.RemoveAll(rec.TokenDir); err != nil {
			m.log.Warn("removing a deleted cluster's token", "cluster", id, "err", err)
		}
	}
	m.reg.UpdateCluster(context.Background(), id, func(r *ClusterRecord) error {
		r.State, r.StateMessage, r.Deleted = ClusterDeleted, "", m.now()
		return nil
	})
}

// CreateBackup copies the cluster's token, users and certificate into a new
// READY backup (CREATE_IN_PROGRESS while copying).
func (m *Manager) CreateBackup(ctx context.Context, clusterID string) (Backup, error) {
	return createBackup(ctx, m.reg, m.cfg.Region, clusterID, m.now)
}

func createBackup(ctx context.Context, reg Registry, region, clusterID string, now func() time.Time) (Backup, error) {
	rec, err := reg.GetCluster(ctx, clusterID)
	if err != nil {
		return Backup{}, err
	}
	switch rec.State {
	case ClusterInitialized, ClusterActive, ClusterDegraded:
	default:
		return Backup{}, invalid("Cluster %s is in state %s and cannot be backed up.", clusterID, rec.State)
	}
	if rec.TokenDir == "" {
		return Backup{}, invalid("Cluster %s is an external HSM; back it up with its vendor's tools.", clusterID)
	}
	b := &BackupRecord{ID: newID("backup"), State: BackupCreateInProgress, ClusterID: clusterID, HsmType: rec.HsmType,
		Mode: rec.Mode, Created: now().UTC(), SourceRegion: region, TokenLabel: rec.TokenLabel}
	if err := reg.CreateBackup(ctx, b); err != nil {
		return Backup{}, err
	}
	// The copy is taken under the cluster's lock, so HSM-owner commands
	// (which hold it while they change users) never interleave with it.
	_, err = reg.UpdateCluster(ctx, clusterID, func(r *ClusterRecord) error {
		if err := copyDir(r.TokenDir, filepath.Join(reg.BackupDir(b.ID), "tokens")); err != nil {
			return fmt.Errorf("hsm.CreateBackup: %w", err)
		}
		b.ClusterCertPEM, b.TrustAnchorPEM = r.ClusterCertPEM, r.TrustAnchorPEM
		b.User = UserRecord{Name: r.User.Name, Exists: r.User.Exists}
		r.LastBackup = now().UTC()
		return nil
	})
	if err != nil {
		return Backup{}, err
	}
	out, err := reg.UpdateBackup(ctx, b.ID, func(r *BackupRecord) error {
		r.State = BackupReady
		r.ClusterCertPEM, r.TrustAnchorPEM, r.User = b.ClusterCertPEM, b.TrustAnchorPEM, b.User
		return nil
	})
	return backupView(out), err
}

// BackupFilter selects backups.
type BackupFilter struct {
	IDs, SourceBackupIDs, ClusterIDs, States []string
	NeverExpires                             *bool
}

// DescribeBackups lists backups, newest first unless ascending.
func (m *Manager) DescribeBackups(ctx context.Context, f BackupFilter, ascending bool, nextToken string, max int) ([]Backup, string, error) {
	recs, err := m.reg.ListBackups(ctx)
	if err != nil {
		return nil, "", err
	}
	var all []Backup
	for _, r := range recs {
		if len(f.IDs) > 0 && !slices.Contains(f.IDs, r.ID) ||
			len(f.SourceBackupIDs) > 0 && !slices.Contains(f.SourceBackupIDs, r.SourceBackup) ||
			len(f.ClusterIDs) > 0 && !slices.Contains(f.ClusterIDs, r.ClusterID) ||
			len(f.States) > 0 && !slices.Contains(f.States, r.State) ||
			f.NeverExpires != nil && *f.NeverExpires != r.NeverExpires {
			continue
		}
		all = append(all, backupView(r))
	}
	if !ascending {
		slices.Reverse(all)
	}
	return page(all, func(b Backup) string { return b.ID }, nextToken, max, 50)
}

// DeleteBackup marks a READY backup PENDING_DELETION; it is deleted 7 days
// later unless restored.
func (m *Manager) DeleteBackup(ctx context.Context, id string) (Backup, error) {
	b, err := m.reg.UpdateBackup(ctx, id, func(r *BackupRecord) error {
		if r.State != BackupReady {
			return invalid("Backup %s is in state %s; only a READY backup can be deleted.", id, r.State)
		}
		r.State, r.DeleteTime = BackupPendingDeletion, m.now().Add(7*24*time.Hour)
		return nil
	})
	return backupView(b), err
}

// RestoreBackup returns a PENDING_DELETION backup to READY.
func (m *Manager) RestoreBackup(ctx context.Context, id string) (Backup, error) {
	b, err := m.reg.UpdateBackup(ctx, id, func(r *BackupRecord) error {
		if r.State != BackupPendingDeletion {
			return invalid("Backup %s is in state %s; only a backup pending deletion can be restored.", id, r.State)
		}
		r.State, r.DeleteTime = BackupReady, time.Time{}
		return nil
	})
	return backupView(b), err
}

// ModifyBackupAttributes sets whether a backup is exempt from retention.
func (m *Manager) ModifyBackupAttributes(ctx context.Context, id string, neverExpires bool) (Backup, error) {
	b, err := m.reg.UpdateBackup(ctx, id, func(r *BackupRecord) error {
		if r.State == BackupDeleted {
			return backupNotFound(id)
		}
		r.NeverExpires = neverExpires
		return nil
	})
	return backupView(b), err
}
