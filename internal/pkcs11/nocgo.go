//go:build !cgo

// keyhold needs cgo: PKCS#11 modules (SoftHSM2, HSM vendors' libraries) are
// C shared libraries, and the embedded store is SQLite through cgo. Without
// cgo this file is the package, and the build fails on the one line below
// with a message that says what to do instead of a page of undefined
// PKCS#11 symbols.
package pkcs11

var _ = keyhold_needs_cgo__build_with_CGO_ENABLED_1_and_a_C_compiler
