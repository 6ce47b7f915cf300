# osforge: build images and run the tests.
#
#   make cut_image                                  # the default ISO (profile ephemeral)
#   make cut_image IMAGE_TYPE=iso PROFILE=base VARS="hostname=node-1" OUTPUT_DIR=out
#   make cut_image IMAGE_TYPE=iso PROXY=http://proxy:3128 NO_PROXY=localhost
#   make cut_image IMAGE_TYPE=qcow                  # control-plane.qcow2 and data-plane.qcow2
#   make cut_image IMAGE_TYPE=qcow QCOW_BUNDLE="data-plane" VARS="hugepages=64"
#   make cut_image IMAGE_TYPE=qcow QCOW_BUNDLE=site/profiles   # every *.yaml in a folder
#   make cut_image IMAGE_TYPE=qcow QCOW_BUNDLE=manifests/qcow-bundle   # an Airship bundle, imported
#   make build                                      # the builder image (Containerfile, buildah)
#   make cut_image CONTAINER=1                      # cut_image inside the builder image
#   make package_qcow PUSH_IMAGE=true               # out/*.qcow2 in an image, under /qcows/
#   make images                                     # build, the ISO, the qcow bundle, package_qcow
#   make cut_image IMAGE_TYPE=iso WORKDIR=manifests # Airship's iso/ and rootfs/, imported: airship-ephemeral.iso
#   make test                                       # all tests (as root: they mount and boot images)
#   make help                                       # targets and variables
#
# Variables follow Airship image-builder's Makefile where they overlap.
CARGO ?= cargo
OSFORGE ?= target/release/osforge
IMAGE_TYPE ?= iso
PROFILE ?= ephemeral
OUTPUT_DIR ?= ./out
PROXY ?=
NO_PROXY ?= localhost,127.0.0.1
MIRROR ?=
# IMAGE_TYPE=qcow builds one qcow2 per profile of the bundle, as Airship's qcow
# bundle made one per sub-folder: a list of profile names or a folder of YAMLs.
# The profiles share one stage cache, so what they have in common is built once.
# An Airship tree (a qcow-bundle folder whose sub-folders have qcow-vars.yaml,
# or a manifests folder with qcow-bundle*/ in it) is first imported with
# `osforge import-airship` into $(OUTPUT_DIR)/airship-profiles; then one
# <sub-folder>.qcow2 is built per image. WORKDIR (Airship's default
# ./manifests) is used when it holds one and QCOW_BUNDLE is not set.
# IMAGE_TYPE=iso likewise: when PROFILE is not set and WORKDIR has an iso/
# folder, the import's airship-ephemeral.yaml is built (airship-ephemeral.iso).
WORKDIR ?= ./manifests
QCOW_BUNDLE ?= control-plane data-plane
# Template variables, space separated: VARS="hostname=node-1 hugepages=64"
VARS ?=
CMDLINE_APPEND ?=
OSFORGE_CACHE_DIR ?=

# The builder image (Containerfile) and package_qcow's image are named as in
# Airship: $(DOCKER_REGISTRY)/$(IMAGE_PREFIX)/$(IMAGE_NAME):$(IMAGE_TAG) and
# $(DOCKER_REGISTRY)/$(IMAGE_PREFIX)/<bundle>:$(IMAGE_TAG). PUSH_IMAGE=true pushes
# them; TLS_VERIFY=false allows a registry on plain HTTP (a local one).
DOCKER_REGISTRY ?= localhost
IMAGE_PREFIX ?= airship
IMAGE_NAME ?= osforge
IMAGE_TAG ?= latest
PUSH_IMAGE ?= false
TLS_VERIFY ?= true
BUILDAH ?= buildah
# chroot needs no OCI runtime (runc, crun) on the host.
BUILDAH_ISOLATION ?= chroot
# Extra `buildah bud` flags; --layers reuses the package layer when only osforge changed.
BUD_FLAGS ?= --layers
# The images the Containerfile starts from (its ARG defaults when empty).
BASE_IMAGE ?=
RUST_IMAGE ?=
# A host-built osforge to put in the builder image instead of compiling one in
# RUST_IMAGE (e.g. OSFORGE_BINARY=target/release/osforge after `make osforge`).
OSFORGE_BINARY ?=
BUILDER_IMAGE ?= $(DOCKER_REGISTRY)/$(IMAGE_PREFIX)/$(IMAGE_NAME):$(IMAGE_TAG)
# CONTAINER=1: cut_image runs in BUILDER_IMAGE (made by `make build`) instead of on the host.
CONTAINER ?=
# package_qcow packs every *.qcow2 of QCOW_DIR with its .sha256 and .md5sum, into
# an image named after the bundle: its folder's name, else qcow-bundle.
QCOW_DIR ?= $(OUTPUT_DIR)
QCOW_BUNDLE_NAME ?= $(if $(and $(filter 1,$(words $(QCOW_BUNDLE))),$(wildcard $(QCOW_BUNDLE)/.)),$(notdir $(abspath $(QCOW_BUNDLE))),qcow-bundle)
QCOW_IMAGE ?= $(DOCKER_REGISTRY)/$(IMAGE_PREFIX)/$(QCOW_BUNDLE_NAME):$(IMAGE_TAG)
# Airship's switches for skipping build stages by hand. Accepted and ignored:
# osforge's stage cache rebuilds only what changed.
SKIP_FLAGS := SKIP_MULTISTRAP SKIP_MULTI_ROLE SKIP_OSCONFIG_ROLE SKIP_LIVECDCONTENT_ROLE
ifeq ($(MAKELEVEL),0)
$(foreach f,$(SKIP_FLAGS),$(if $($(f)),$(info $(f) is not needed: osforge's stage cache reuses unchanged stages by itself)))
endif

# The proxy goes to osforge in its environment (OSFORGE_PROXY), not on the
# command line: a proxy URL may hold a password, and command lines are echoed
# and visible to every user of the machine.
proxy_env = $(if $(PROXY),OSFORGE_PROXY='$(subst ','\'',$(PROXY))')
build_args = --output $(OUTPUT_DIR) \
	$(if $(PROXY),--no-proxy $(NO_PROXY)) \
	$(if $(MIRROR),--mirror $(MIRROR)) \
	$(foreach v,$(VARS),--var '$(v)') \
	$(if $(CMDLINE_APPEND),--cmdline-append '$(CMDLINE_APPEND)') \
	$(if $(OSFORGE_CACHE_DIR),--cache-dir $(OSFORGE_CACHE_DIR))

.PHONY: help osforge build deps deps-container deps-test test cut_image generate_iso \
	package_qcow images clean
help:
	@echo 'Targets:'
	@echo '  osforge       compile osforge (target/release/osforge)'
	@echo '  build         the builder image $(BUILDER_IMAGE) from Containerfile (buildah);'
	@echo '                pushed when PUSH_IMAGE=true'
	@echo '  cut_image     IMAGE_TYPE=iso: $(OUTPUT_DIR)/$$PROFILE.iso; IMAGE_TYPE=qcow: one qcow2 per'
	@echo '                profile of QCOW_BUNDLE; each with .sha256 and .md5sum. CONTAINER=1: in the builder image'
	@echo '  generate_iso  cut_image IMAGE_TYPE=iso'
	@echo '  package_qcow  QCOW_DIR/*.qcow2 and their checksums under /qcows/ in $(QCOW_IMAGE)'
	@echo '                (FROM scratch); pushed when PUSH_IMAGE=true'
	@echo '  images        build, cut_image IMAGE_TYPE=iso, cut_image IMAGE_TYPE=qcow, package_qcow'
	@echo '  test          every test (cargo test --release; as root)'
	@echo '  clean         remove OUTPUT_DIR'
	@echo 'Variables (now):'
	@echo '  IMAGE_TYPE=$(IMAGE_TYPE) PROFILE=$(PROFILE) QCOW_BUNDLE=$(QCOW_BUNDLE) OUTPUT_DIR=$(OUTPUT_DIR)'
	@echo '  VARS=$(VARS) CMDLINE_APPEND=$(CMDLINE_APPEND) MIRROR=$(MIRROR) PROXY=$(if $(PROXY),(set)) NO_PROXY=$(NO_PROXY)'
	@echo '  OSFORGE_CACHE_DIR=$(OSFORGE_CACHE_DIR) CONTAINER=$(CONTAINER)'
	@echo '  DOCKER_REGISTRY=$(DOCKER_REGISTRY) IMAGE_PREFIX=$(IMAGE_PREFIX) IMAGE_NAME=$(IMAGE_NAME) IMAGE_TAG=$(IMAGE_TAG)'
	@echo '  PUSH_IMAGE=$(PUSH_IMAGE) TLS_VERIFY=$(TLS_VERIFY) BASE_IMAGE=$(BASE_IMAGE) RUST_IMAGE=$(RUST_IMAGE)'
	@echo '  OSFORGE_BINARY=$(OSFORGE_BINARY) BUD_FLAGS=$(BUD_FLAGS) QCOW_DIR=$(QCOW_DIR) QCOW_BUNDLE_NAME=$(QCOW_BUNDLE_NAME)'
	@echo '  $(SKIP_FLAGS): accepted, not needed (the stage cache)'

# Host packages: installed as root on Debian, named otherwise (deps/packages.tsv is the list).
deps:
	@deps/setup build

deps-container:
	@deps/setup container

deps-test:
	@deps/setup test

osforge:
	$(CARGO) build --release

# The Containerfile's runtime-prebuilt target copies the binary from the build
# context, so a binary from elsewhere (another CARGO_TARGET_DIR) is staged in it first.
build: deps-container
ifneq ($(OSFORGE_BINARY),)
	install -D -m 0755 $(OSFORGE_BINARY) target/container/osforge
endif
	$(BUILDAH) bud --isolation $(BUILDAH_ISOLATION) $(BUD_FLAGS) \
		$(if $(OSFORGE_BINARY),--target runtime-prebuilt --build-arg OSFORGE_BINARY=target/container/osforge) \
		$(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
		$(if $(RUST_IMAGE),--build-arg RUST_IMAGE=$(RUST_IMAGE)) \
		$(if $(PROXY),--build-arg HTTP_PROXY=$(PROXY) --build-arg HTTPS_PROXY=$(PROXY) --build-arg NO_PROXY=$(NO_PROXY)) \
		-f Containerfile -t $(BUILDER_IMAGE) .
ifeq ($(PUSH_IMAGE),true)
	$(BUILDAH) push --tls-verify=$(TLS_VERIFY) $(BUILDER_IMAGE)
endif

generate_iso:
	$(MAKE) cut_image IMAGE_TYPE=iso

ifeq ($(CONTAINER),1)
# cut_image again, inside the builder image, with this checkout, OUTPUT_DIR, the
# cache and the QCOW_BUNDLE and WORKDIR folders mounted at their own paths, so
# paths mean the same inside and out; a QCOW_BUNDLE left at its default stays
# unset, so the inner make still looks for an Airship bundle in WORKDIR. buildah's chroot isolation needs two capabilities beyond
# its defaults: CAP_SYS_ADMIN, because mmdebstrap running as root in unshare
# mode unshares a mount namespace (a chroot cannot make a user namespace), and
# CAP_MKNOD, to unpack the bootstrap's /dev nodes.
container_cache = $(abspath $(or $(OSFORGE_CACHE_DIR),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/osforge))
bundle_dir = $(if $(and $(filter 1,$(words $(QCOW_BUNDLE))),$(wildcard $(QCOW_BUNDLE)/.)),$(abspath $(QCOW_BUNDLE)))
workdir_dir = $(if $(wildcard $(WORKDIR)/.),$(abspath $(WORKDIR)))
container_mounts = $(CURDIR) $(sort $(filter-out $(CURDIR)/%,$(abspath $(OUTPUT_DIR)) $(container_cache) $(bundle_dir) $(workdir_dir)))
shquote = '$(subst ','\'',$(1))'
cut_image: deps-container
	@mkdir -p $(OUTPUT_DIR) $(container_cache)
	@$(BUILDAH) inspect --type image $(BUILDER_IMAGE) >/dev/null 2>&1 || \
		{ echo "cut_image: no image $(BUILDER_IMAGE); make build first" >&2; exit 2; }
	set -e; ctr=$$($(BUILDAH) from -q $(BUILDER_IMAGE)); \
	trap '$(BUILDAH) rm "$$ctr" >/dev/null' EXIT; \
	$(BUILDAH) run --isolation chroot --cap-add CAP_SYS_ADMIN,CAP_MKNOD \
		$(foreach m,$(container_mounts),-v $(m):$(m)) --workingdir $(CURDIR) \
		-e OSFORGE_PROFILE_PATH=$(CURDIR)/profiles:/usr/share/osforge/profiles \
		-e OSFORGE_TEMPLATE_PATH=$(CURDIR)/templates:/usr/share/osforge/templates \
		"$$ctr" -- make cut_image CONTAINER= OSFORGE=osforge \
		IMAGE_TYPE=$(call shquote,$(IMAGE_TYPE)) PROFILE=$(call shquote,$(PROFILE)) \
		$(if $(filter-out file,$(origin QCOW_BUNDLE)),QCOW_BUNDLE=$(call shquote,$(or $(bundle_dir),$(QCOW_BUNDLE)))) \
		$(if $(workdir_dir),WORKDIR=$(workdir_dir)) \
		OUTPUT_DIR=$(abspath $(OUTPUT_DIR)) OSFORGE_CACHE_DIR=$(container_cache) \
		VARS=$(call shquote,$(VARS)) CMDLINE_APPEND=$(call shquote,$(CMDLINE_APPEND)) \
		MIRROR=$(call shquote,$(MIRROR)) PROXY=$(call shquote,$(PROXY)) NO_PROXY=$(call shquote,$(NO_PROXY))
else
# The host's osforge: compiled here unless OSFORGE names another one.
cut_image: deps $(if $(filter target/release/osforge,$(OSFORGE)),osforge)
ifeq ($(IMAGE_TYPE),iso)
	@set -e; \
	profile="$(PROFILE)"; \
	if [ "$(origin PROFILE)" = file ] && [ -d "$(WORKDIR)/iso" ]; then \
		rm -rf "$(OUTPUT_DIR)/airship-profiles"; \
		$(OSFORGE) import-airship "$(WORKDIR)" "$(OUTPUT_DIR)/airship-profiles"; \
		profile="$(OUTPUT_DIR)/airship-profiles/airship-ephemeral.yaml"; \
	fi; \
	echo "$(OSFORGE) build --profile $$profile --type iso $(strip $(build_args))"; \
	$(proxy_env) $(OSFORGE) build --profile "$$profile" --type iso $(build_args)
else ifeq ($(IMAGE_TYPE),qcow)
	@set -e; \
	airship_images() { \
		found=$$(for f in "$$1"/*/qcow-vars.yaml; do if [ -f "$$f" ]; then basename "$$(dirname "$$f")"; fi; done); \
		if [ -z "$$found" ]; then \
			found=$$(for f in "$$1"/qcow-bundle*/*/qcow-vars.yaml; do if [ -f "$$f" ]; then basename "$$(dirname "$$f")"; fi; done); \
		fi; \
		echo $$found; \
	}; \
	bundle="$(QCOW_BUNDLE)"; \
	if [ "$(origin QCOW_BUNDLE)" = file ] && [ -d "$(WORKDIR)" ] && [ -n "$$(airship_images "$(WORKDIR)")" ]; then bundle="$(WORKDIR)"; fi; \
	if [ -d "$$bundle" ] && [ -n "$$(airship_images "$$bundle")" ]; then \
		rm -rf "$(OUTPUT_DIR)/airship-profiles"; \
		$(OSFORGE) import-airship "$$bundle" "$(OUTPUT_DIR)/airship-profiles"; \
		profiles=""; \
		for image in $$(airship_images "$$bundle"); do profiles="$$profiles $(OUTPUT_DIR)/airship-profiles/$$image.yaml"; done; \
	elif [ -d "$$bundle" ]; then profiles="$$(ls "$$bundle"/*.yaml)"; else profiles="$$bundle"; fi; \
	test -n "$$profiles" || { echo "QCOW_BUNDLE=$$bundle: no profiles" >&2; exit 2; }; \
	for profile in $$profiles; do \
		echo "cut_image: $$profile -> $(OUTPUT_DIR)"; \
		$(proxy_env) $(OSFORGE) build --profile "$$profile" --type qcow2 $(build_args); \
	done
else
	$(error IMAGE_TYPE must be iso or qcow, not '$(IMAGE_TYPE)')
endif
endif

# FROM scratch with the files under /qcows/, as Airship's qcow bundle images:
# metal3/Ironic's init container copies them from there.
package_qcow: deps-container
	@set -e; \
	qcows="$$(ls $(QCOW_DIR)/*.qcow2 2>/dev/null || true)"; \
	test -n "$$qcows" || { echo "package_qcow: no *.qcow2 in $(QCOW_DIR) (make cut_image IMAGE_TYPE=qcow writes them)" >&2; exit 2; }; \
	files=""; \
	for q in $$qcows; do \
		for sum in sha256 md5sum; do \
			test -f "$$q.$$sum" || { echo "package_qcow: $$q has no $$q.$$sum (cut_image writes one beside each image)" >&2; exit 2; }; \
		done; \
		files="$$files $$q $$q.sha256 $$q.md5sum"; \
	done; \
	ctr=$$($(BUILDAH) from -q scratch); \
	trap '$(BUILDAH) rm "$$ctr" >/dev/null' EXIT; \
	$(BUILDAH) copy -q "$$ctr" $$files /qcows/ >/dev/null; \
	$(BUILDAH) commit -q "$$ctr" $(QCOW_IMAGE) >/dev/null; \
	echo "package_qcow: $(QCOW_IMAGE):" $$(for f in $$files; do basename "$$f"; done | sed 's|^|/qcows/|')
ifeq ($(PUSH_IMAGE),true)
	$(BUILDAH) push --tls-verify=$(TLS_VERIFY) $(QCOW_IMAGE)
endif

images: build
	$(MAKE) cut_image IMAGE_TYPE=iso
	$(MAKE) cut_image IMAGE_TYPE=qcow
	$(MAKE) package_qcow

test: deps-test
	$(CARGO) test --release

clean:
	rm -rf $(OUTPUT_DIR)
