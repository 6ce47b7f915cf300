# osforge: build images and run the tests.
CARGO ?= cargo

.PHONY: build test
build:
	$(CARGO) build --release

test:
	$(CARGO) test --release

# cut_image, IMAGE_TYPE=qcow: one qcow2 per profile of a bundle, as Airship's
# qcow bundle made one per sub-folder. QCOW_BUNDLE is a list of profile names
# or a directory of profile YAMLs; each image lands in QCOW_OUTPUT with its
# .sha256 and .md5sum. The profiles share one stage cache, so what they have
# in common is built once.
IMAGE_TYPE ?= iso
QCOW_BUNDLE ?= control-plane data-plane
QCOW_OUTPUT ?= out
OSFORGE ?= target/release/osforge
# More flags for every build, e.g. QCOW_BUILD_ARGS="--var hugepages=64 --mirror http://deb.debian.org/debian".
QCOW_BUILD_ARGS ?=

.PHONY: cut_image_qcow
ifeq ($(IMAGE_TYPE),qcow)
.PHONY: cut_image
cut_image: cut_image_qcow
endif

cut_image_qcow: build
	@set -e; \
	if [ -d "$(QCOW_BUNDLE)" ]; then profiles="$$(ls "$(QCOW_BUNDLE)"/*.yaml)"; else profiles="$(QCOW_BUNDLE)"; fi; \
	test -n "$$profiles" || { echo "QCOW_BUNDLE=$(QCOW_BUNDLE): no profiles" >&2; exit 2; }; \
	for profile in $$profiles; do \
		echo "cut_image: $$profile -> $(QCOW_OUTPUT)"; \
		$(OSFORGE) build --profile "$$profile" --type qcow2 --output "$(QCOW_OUTPUT)" $(QCOW_BUILD_ARGS); \
	done
