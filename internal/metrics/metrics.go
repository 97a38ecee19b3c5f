// Package metrics holds keyhold's Prometheus metrics (client_golang) and the
// small hooks that feed them: a request observer, a backend-call timer
// (HSM and XKS key store drivers), store call latency, audit queue and write figures and
// custom key store connection states.
//
// Labels are bounded: service and operation come from the operation tables
// (an unknown operation is "unknown"), error codes from AWS's error names,
// store ids from the custom key stores that exist. It never records
// request bodies, key ids of data or anything secret.
package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is one process's registry and its collectors. Safe for
// concurrent use.
type Metrics struct {
	Registry *prometheus.Registry

	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	backendCalls  *prometheus.HistogramVec
	backendErrors *prometheus.CounterVec
	storeCalls    *prometheus.HistogramVec
	storeErrors   *prometheus.CounterVec
	auditWrite    prometheus.Histogram
	auditRefused  prometheus.Counter
	auditDepth    prometheus.GaugeFunc
	stores        *storeCollector
	auditQueue    func() int
}

// Buckets for API latencies: 100µs to ~10s.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 2.5, 13)

// Buckets for store calls: 10µs (a cached SQLite read) to ~5s.
var storeBuckets = prometheus.ExponentialBuckets(0.00001, 2.5, 15)

// New builds the registry with Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyhold_requests_total",
		Help: "API requests by service (signing name), operation and error code (\"\" when it succeeded).",
	}, []string{"service", "operation", "code"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "keyhold_request_duration_seconds",
		Help:    "API request latency by service and operation, from the request's arrival to its response.",
		Buckets: latencyBuckets,
	}, []string{"service", "operation"})
	m.backendCalls = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "keyhold_backend_call_duration_seconds",
		Help:    "Latency of calls to key store backends: backend is hsm (PKCS#11 via an HSM process) or xks (an XKS proxy).",
		Buckets: latencyBuckets,
	}, []string{"backend", "call"})
	m.backendErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyhold_backend_call_errors_total",
		Help: "Failed calls to key store backends.",
	}, []string{"backend", "call"})
	m.storeCalls = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "keyhold_store_call_duration_seconds",
		Help:    "Latency of calls to the metadata store (SQLite or PostgreSQL) by Store method; Tx spans the calls of its transaction.",
		Buckets: storeBuckets,
	}, []string{"operation"})
	m.storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keyhold_store_call_errors_total",
		Help: "Store calls that returned an error, by Store method and kind: not_found, exists, conflict, limit, rolled_back and canceled are answers the caller expects; unavailable and other are faults.",
	}, []string{"operation", "error"})
	m.auditWrite = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "keyhold_audit_write_duration_seconds",
		Help:    "Time to encode and append one audit event (group commit: the fsync is shared).",
		Buckets: latencyBuckets,
	})
	m.auditRefused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "keyhold_audit_refused_total",
		Help: "Requests answered with an internal error because the audit trail refused their event (fail-closed audit).",
	})
	m.auditDepth = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "keyhold_audit_queue_depth",
		Help: "Audit events accepted and not yet durable (written and fsynced).",
	}, func() float64 {
		if m.auditQueue == nil {
			return 0
		}
		return float64(m.auditQueue())
	})
	m.stores = &storeCollector{desc: prometheus.NewDesc("keyhold_custom_key_store_connection_state",
		"1 for the state each custom key store is in (label state), 0 for the others.",
		[]string{"account", "custom_key_store_id", "type", "state"}, nil)}
	m.Registry.MustRegister(m.requests, m.latency, m.backendCalls, m.backendErrors, m.storeCalls, m.storeErrors, m.auditWrite, m.auditRefused, m.auditDepth,
		m.stores,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector())
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// ObserveRequest records one API request. code is the AWS error name, ""
// on success.
func (m *Metrics) ObserveRequest(service, operation, code string, d time.Duration) {
	if operation == "" {
		operation = "unknown"
	}
	if service == "" {
		service = "unknown"
	}
	m.requests.WithLabelValues(service, operation, code).Inc()
	m.latency.WithLabelValues(service, operation).Observe(d.Seconds())
}

// ObserveBackend records one key store backend call.
func (m *Metrics) ObserveBackend(backend, call string, d time.Duration, err error) {
	m.backendCalls.WithLabelValues(backend, call).Observe(d.Seconds())
	if err != nil {
		m.backendErrors.WithLabelValues(backend, call).Inc()
	}
}

// ObserveStore records one store call; errorKind is store.ErrorClass of
// its error ("" on success).
func (m *Metrics) ObserveStore(operation string, d time.Duration, errorKind string) {
	m.storeCalls.WithLabelValues(operation).Observe(d.Seconds())
	if errorKind != "" {
		m.storeErrors.WithLabelValues(operation, errorKind).Inc()
	}
}

// ObserveAuditWrite records the time one audit event took to encode and
// append.
func (m *Metrics) ObserveAuditWrite(d time.Duration) { m.auditWrite.Observe(d.Seconds()) }

// AuditRefused counts a request whose event the audit trail refused.
func (m *Metrics) AuditRefused() { m.auditRefused.Inc() }

// SetAuditQueue gives the gauge its source: the number of queued events.
func (m *Metrics) SetAuditQueue(depth func() int) { m.auditQueue = depth }

// StoreState is one custom key store's connection state.
type StoreState struct {
	AccountID, ID, Type, State string
}

// ConnectionStates are the states a custom key store can report.
var ConnectionStates = []string{"CONNECTED", "CONNECTING", "DISCONNECTED", "DISCONNECTING", "FAILED"}

// SetCustomKeyStores gives the connection-state gauge its source, called
// at each scrape.
func (m *Metrics) SetCustomKeyStores(list func(ctx context.Context) []StoreState) {
	m.stores.list = list
}

type storeCollector struct {
	desc *prometheus.Desc
	list func(ctx context.Context) []StoreState
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	if c.list == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range c.list(ctx) {
		for _, st := range ConnectionStates {
			v := 0.0
			if st == s.State {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, s.AccountID, s.ID, s.Type, st)
		}
	}
}
