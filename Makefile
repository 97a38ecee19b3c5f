# keyhold's make targets; each is a thin wrapper over a script or go command.
.PHONY: build test release e2e-readme clean

# build: a development binary in ./keyhold (needs cgo and a C compiler).
build:
	@[ "$$(go env CGO_ENABLED)" = 1 ] || { echo "keyhold needs cgo: set CGO_ENABLED=1 and install a C compiler (gcc)"; exit 1; }
	go build -o keyhold ./cmd/keyhold

# test: the whole suite, as CI runs it.
test:
	./scripts/test.sh

# release: dist/keyhold-VERSION-OS-ARCH with version and commit stamped in.
release:
	./scripts/release.sh $(VERSION)

clean:
	rm -rf dist keyhold
