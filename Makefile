# osforge: build images and run the tests.
CARGO ?= cargo

.PHONY: build test
build:
	$(CARGO) build --release

test:
	$(CARGO) test --release
