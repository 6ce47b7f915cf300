# osforge: build images and run the tests.
#
#   make cut_image                                  # the default ISO (profile ephemeral)
#   make cut_image IMAGE_TYPE=iso PROFILE=base VARS="hostname=node-1" OUTPUT_DIR=out
#   make cut_image IMAGE_TYPE=iso PROXY=http://proxy:3128 NO_PROXY=localhost
#   make cut_image IMAGE_TYPE=qcow                  # control-plane.qcow2 and data-plane.qcow2
#   make cut_image IMAGE_TYPE=qcow QCOW_BUNDLE="data-plane" VARS="hugepages=64"
#   make cut_image IMAGE_TYPE=qcow QCOW_BUNDLE=site/profiles   # every *.yaml in a folder
#   make cut_image IMAGE_TYPE=qcow QCOW_BUNDLE=manifests/qcow-bundle   # an Airship bundle, imported
#   make cut_image IMAGE_TYPE=iso WORKDIR=manifests # Airship's iso/ and rootfs/, imported: airship-ephemeral.iso
#   make test                                       # all tests (as root: they mount and boot images)
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

build_args = --output $(OUTPUT_DIR) \
	$(if $(PROXY),--proxy $(PROXY) --no-proxy $(NO_PROXY)) \
	$(if $(MIRROR),--mirror $(MIRROR)) \
	$(foreach v,$(VARS),--var '$(v)') \
	$(if $(CMDLINE_APPEND),--cmdline-append '$(CMDLINE_APPEND)') \
	$(if $(OSFORGE_CACHE_DIR),--cache-dir $(OSFORGE_CACHE_DIR))

.PHONY: build deps deps-test test cut_image clean
# Host packages: installed as root on Debian, named otherwise (deps/packages.tsv is the list).
deps:
	@deps/setup build

deps-test:
	@deps/setup test

build:
	$(CARGO) build --release

cut_image: deps build
ifeq ($(IMAGE_TYPE),iso)
	@set -e; \
	profile="$(PROFILE)"; \
	if [ "$(origin PROFILE)" = file ] && [ -d "$(WORKDIR)/iso" ]; then \
		rm -rf "$(OUTPUT_DIR)/airship-profiles"; \
		$(OSFORGE) import-airship "$(WORKDIR)" "$(OUTPUT_DIR)/airship-profiles"; \
		profile="$(OUTPUT_DIR)/airship-profiles/airship-ephemeral.yaml"; \
	fi; \
	echo "cut_image: $$profile -> $(OUTPUT_DIR)"; \
	$(OSFORGE) build --profile "$$profile" --type iso $(build_args)
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
		$(OSFORGE) build --profile "$$profile" --type qcow2 $(build_args); \
	done
else
	$(error IMAGE_TYPE must be iso or qcow, not '$(IMAGE_TYPE)')
endif

test: deps-test
	$(CARGO) test --release

clean:
	rm -rf $(OUTPUT_DIR)
