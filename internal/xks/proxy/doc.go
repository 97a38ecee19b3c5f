// Package proxy is keyhold's XKS proxy: an HTTPS server that speaks the AWS
// KMS External Key Store proxy API v1 (SigV4 service "kms-xks-proxy") and
// performs AES-256-GCM with keys that stay inside PKCS#11 tokens. It is what
// `keyhold xks-proxy` runs.
//
// It must never log, return or put into an error a plaintext, an AAD, a PIN
// or a SigV4 secret, and it never follows redirects or cleans request paths:
// the path it routes on is the path the client signed.
//
// # Routes
//
// For every configured key store prefix P (possibly empty):
//
//	POST P/kms/xks/v1/health
//	POST P/kms/xks/v1/keys/{externalKeyId}/metadata
//	POST P/kms/xks/v1/keys/{externalKeyId}/encrypt
//	POST P/kms/xks/v1/keys/{externalKeyId}/decrypt
//	GET  /ping   (plain "ok" for load balancers; no authentication)
//
// Any other method on an API path answers 405; any other path answers 404
// InvalidUriPathException. Errors are `{"errorName":..,"errorMessage":..}`.
// Secondary authorization (the spec's optional AccessDeniedException) is not
// implemented: a request with a valid signature for the prefix is allowed.
//
// # Configuration file (JSON)
//
// The file holds secrets (SigV4 secret keys and PKCS#11 user PINs), so Load
// refuses a file readable by group or others (it must be 0600 or stricter).
// Neither is ever logged. Relative paths are relative to the file's directory.
//
//	{
//	  "listen": "127.0.0.1:8443",        // TLS listener address
//	  "pingListen": "",                  // optional extra plain-HTTP listener that serves only GET /ping
//	  "region": "us-east-1",             // the KMS region; SigV4 scopes naming another region are refused
//	  "softhsm2Conf": "softhsm2.conf",   // optional; exported as SOFTHSM2_CONF before any module is opened.
//	                                     // SoftHSM2 reads it once per process, so one proxy process serves
//	                                     // one SoftHSM2 token directory.
//	  "tls": {
//	    "certFile": "server.pem",        // PEM certificate chain
//	    "keyFile": "server-key.pem",     // PEM private key
//	    "clientCAFile": "",              // optional: require client certificates chained to these CAs (mTLS)
//	    "clientCommonName": ""           // optional with clientCAFile: the client certificate's subject CN must equal this
//	  },
//	  "limits": {
//	    "maxPlaintextBytes": 4300,       // decoded plaintext/ciphertext limit; larger answers 501 (min 4300)
//	    "maxAADBytes": 8192              // decoded AAD limit; larger answers 501 (min 8192, max 65535)
//	  },
//	  "hsmTimeout": "2s",                // an HSM call slower than this answers 503 DependencyTimeoutException
//	  "healthCacheTTL": "30s",           // how long a health check result is reused (at most 1m)
//	  "keyStores": [{
//	    "uriPathPrefix": "/tenant1",     // "" or "/segment[/segment...]" of [A-Za-z0-9_-]; unique
//	    "credentials": [                 // at least one; two or more for rotation (reloaded on SIGHUP)
//	      {"accessKeyId": "AKID...", "secretAccessKey": "..."}
//	    ],
//	    "pkcs11": {
//	      "module": "/usr/lib/softhsm/libsofthsm2.so",
//	      "tokenLabel": "xks",
//	      "userPin": "..."               // the token's user PIN
//	    },
//	    "healthKeyLabel": "xks-health-key", // a test key used only by the health check (never bound to KMS)
//	    "ciphertextMetadata": "",        // optional base64, at most 20 bytes, returned with every encrypt
//	    "disabled": false,               // true: every call answers InvalidStateException
//	    "maxRequestsPerSecond": 0,       // optional quota; above it calls answer 429 ThrottlingException
//	    "keys": [{
//	      "id": "xks-example-key",       // the external key id KMS sends ([A-Za-z0-9-._]{1,128})
//	      "label": "",                   // the PKCS#11 CKA_LABEL; defaults to id
//	      "ciphertextMetadata": "",      // optional base64 (≤ 20 bytes), overrides the key store's
//	      "disabled": false              // true: metadata says DISABLED, encrypt/decrypt answer InvalidStateException
//	    }]
//	  }]
//	}
//
// On SIGHUP (Server.Reload) the file is read again and the credentials, keys,
// ciphertextMetadata, disabled flags and quotas of existing prefixes are
// replaced without a restart; listener, TLS, region and PKCS#11 settings need
// a restart.
package proxy
