// Package hsm is keyhold's model of AWS CloudHSM clusters, made real with
// PKCS#11: the cloudhsmv2 control plane (clusters, HSMs, backups, tags), the
// crypto user (kmsuser) that a KMS custom key store logs in as, and the HSM
// processes that do the cryptography.
//
// # Model
//
// A cluster is one PKCS#11 token. With SoftHSM2 (the default) that is one
// token directory under DATADIR/hsm/clusters/<id>/tokens with its own
// softhsm2.conf, mode 0700. An HSM is one process, the keyhold binary
// re-executed as the hidden `hsm-daemon` subcommand with SOFTHSM2_CONF set to
// the cluster's file, attached to the token. It is a network service, as a
// CloudHSM HSM is at its ENI IP: it listens on TCP at its EniIp (an address
// of the default network, this host's loopback 127.100.0.0/16, or
// Config.ListenIP) and a port kept in its record, with mutual TLS under the
// cluster's own network CA (tls.go), speaking rpc.go's gob frames on
// persistent connections. Every keyhold replica sharing the records reaches
// it: the replica whose data directory holds the token (the one that
// created the cluster) runs the cluster's HSM processes and their
// transitions, and the others connect to them. HSMs of a cluster share the
// token files, so a key made through one is usable through all; each
// process adds throughput; killing one is a real HSM failure (the HSM
// becomes DEGRADED and UserSession fails over). Daemons die with the
// server that runs them (Pdeathsig and a stdin pipe) and are respawned by
// Open, on their old port when it is free; sessions of other replicas log
// in to them again. Temporary daemons (token set-up, the CSR, owner
// commands) listen on a unix socket instead, for their parent only.
//
// Sessions: PKCS#11 login state belongs to a process, so a daemon keeps one
// token login and hands each client (replica) a session of it. CloudHSM's
// one login per crypto user is tracked in the record (LoggedInBy): a KMS
// custom key store logs in as itself (LoginAs), so each replica serving
// the store holds its own session of the store's one login, and anyone
// else (another store, cloudhsm_mgmt_util) gets USER_LOGGED_IN.
//
// The token's SO PIN is the crypto officer's password (first the cluster's
// PreCoPassword, then what `keyhold hsm activate` sets); the USER PIN is the
// password of the single crypto user. SoftHSM2 has one USER PIN per token, so
// a cluster holds at most one CU (normally kmsuser). What SoftHSM2 lacks and
// KMS relies on is tracked here, durably, in the cluster record: whether the
// CU exists, failed logins and the lockout after 5 of them, and whether the
// CU is logged in elsewhere.
//
// # State
//
// Cluster, HSM, backup and crypto-user records live in keyhold's store
// (store.Store, through StoreRegistry): one row per cluster and per backup,
// written in a transaction, durable before a call returns. Token
// directories stay files under DATADIR/hsm (absolute paths). The HSM-owner
// commands (`keyhold hsm activate|create-user|...`, run as separate
// processes while the server runs) open the same database and change
// records under the cluster directory's flock, which every writer takes;
// the server re-reads records on every control-plane call and login instead
// of caching them, so it never acts on a stale one. Those commands do their
// token work (SO login, C_SetPIN, C_InitPIN) in a short-lived daemon
// process of their own, because PKCS#11 login state is per process and the
// server's daemons may be logged in as the CU. Records of an older keyhold
// (JSON files) are imported into the store once and their files removed.
//
// Backups are copies of the token directory with the cluster certificate.
// One is made when a cluster is activated, when an HSM is added to an active
// cluster, once a day per active cluster, and on demand
// (Manager.CreateBackup, `keyhold hsm backup`). A cluster created from a
// backup gets a copy in its own token directory (never beside the original:
// two tokens with one serial in a tokendir abort SoftHSM2), the backup's
// cluster certificate, keys and users, and starts ACTIVE.
//
// # Production path: a real HSM
//
// Nothing above the daemon knows it is SoftHSM2. To drive a real HSM, a
// cluster record is written with ModulePath set to the vendor's PKCS#11
// library and TokenLabel to its token (partition) label, and with no
// TokenDir: keyhold then never initialises or copies the token, does not set
// SOFTHSM2_CONF, and each HSM daemon opens the vendor library and logs in to
// that token. For AWS CloudHSM (libcloudhsm_pkcs11.so, client SDK 5) the
// token label is the cluster's (the SDK exposes one slot) and the PIN that
// keyhold passes is "kmsuser:<password>", so Login is called with the CU's
// name and password joined by a colon; lockout and logged-in tracking are
// then the HSM's own and ours only mirrors them. Only SoftHSM2 is tested.
//
// # Must never
//
// This package never logs, prints or returns in an error a password, PIN or
// key material (Password does not print), never writes an HSM's TLS key to
// disk (it reaches the daemon over its stdin; the cluster CA key rests
// sealed by the root key), never creates an extractable key,
// never places two copies of a token in one token directory, and never
// imports net/http or API wire structs: internal/api/hsmapi translates.
package hsm
