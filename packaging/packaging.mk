# packaging/packaging.mk: included by the Makefile.
#
#   make install [PREFIX=/usr/local] [DESTDIR=...]   binaries, man pages, units,
#                                                    example settings
#   make uninstall [PREFIX=...] [DESTDIR=...]        the same files, removed
#   make deb                                         build/mirrorfs_V_ARCH.deb,
#                                                    build/mirrord_V_ARCH.deb
#   make test-package                                install the .debs, run a
#                                                    mirror with them, purge
#
# The version comes from packaging/VERSION only; `make deb` refuses binaries
# whose --version says otherwise. Everything under /etc (SYSCONFDIR) is
# installed only where no file exists yet, and never removed by uninstall.

PKG_VERSION := $(shell cat packaging/VERSION)

PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
LIBEXECDIR  ?= $(PREFIX)/libexec
MANDIR      ?= $(PREFIX)/share/man
DOCDIR      ?= $(PREFIX)/share/doc
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
SYSCONFDIR  ?= /etc

# The polling client is packaged when the tree builds it.
PKG_POLL := $(filter mirrorfs-poll,$(PROGS))

# The units and scripts name /usr paths; other prefixes are substituted.
PKG_SUBST := sed -e 's|/usr/libexec/|$(LIBEXECDIR)/|g' \
	-e 's|/etc/mirrord/|$(SYSCONFDIR)/mirrord/|g' -e 's|/etc/mirrorfs/|$(SYSCONFDIR)/mirrorfs/|g' \
	-e 's|/usr/bin/mirrord|$(BINDIR)/mirrord|g' -e 's|/usr/bin/mirrorfs|$(BINDIR)/mirrorfs|g'

# pkg_need FILES: fail unless every binary is built (install never builds:
# `make && sudo make install`, and tests may install a sanitizer build).
pkg_need = for f in $(1); do [ -x $$f ] || { echo "make install: $$f is missing: run make first" >&2; exit 1; }; done

# install_conf SRC DEST: install DEST from SRC unless DEST exists.
pkg_install_conf = if [ -e $(2) ]; then echo "  KEEP    $(2) (exists)"; \
	else install -D -m 0644 $(1) $(2); fi

install: install-mirrorfs install-mirrord
	@echo "installed under $(DESTDIR)$(PREFIX); the user mirrord: systemd-sysusers $(SYSUSERSDIR)/mirrord.conf"

install-mirrorfs:
	@$(call pkg_need,$(BUILD)/mirrorfs $(PKG_POLL:%=$(BUILD)/%))
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(LIBEXECDIR)/mirrorfs \
		$(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR)/mirrorfs/examples $(DESTDIR)$(SYSCONFDIR)/mirrorfs
	install -m 0755 $(BUILD)/mirrorfs $(PKG_POLL:%=$(BUILD)/%) $(DESTDIR)$(BINDIR)/
	install -m 0644 packaging/man/mirrorfs.1 $(DESTDIR)$(MANDIR)/man1/
	$(PKG_SUBST) packaging/mirrorfs-service >$(DESTDIR)$(LIBEXECDIR)/mirrorfs/mirrorfs-service
	chmod 0755 $(DESTDIR)$(LIBEXECDIR)/mirrorfs/mirrorfs-service
	$(PKG_SUBST) 'packaging/mirrorfs@.service' >'$(DESTDIR)$(UNITDIR)/mirrorfs@.service'
ifneq ($(PKG_POLL),)
	install -m 0644 packaging/man/mirrorfs-poll.1 $(DESTDIR)$(MANDIR)/man1/
	$(PKG_SUBST) 'packaging/mirrorfs-poll@.service' >'$(DESTDIR)$(UNITDIR)/mirrorfs-poll@.service'
endif
	install -m 0644 packaging/mirrorfs.conf.example $(DESTDIR)$(DOCDIR)/mirrorfs/examples/
	install -m 0644 docs/PACKAGING.md $(DESTDIR)$(DOCDIR)/mirrorfs/

install-mirrord:
	@$(call pkg_need,$(BUILD)/mirrord)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(LIBEXECDIR)/mirrord \
		$(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(DOCDIR)/mirrord/examples
	install -m 0755 $(BUILD)/mirrord $(DESTDIR)$(BINDIR)/
	install -m 0644 packaging/man/mirrord.8 $(DESTDIR)$(MANDIR)/man8/
	$(PKG_SUBST) packaging/mirrord-service >$(DESTDIR)$(LIBEXECDIR)/mirrord/mirrord-service
	chmod 0755 $(DESTDIR)$(LIBEXECDIR)/mirrord/mirrord-service
	$(PKG_SUBST) packaging/mirrord.service >$(DESTDIR)$(UNITDIR)/mirrord.service
	install -m 0644 packaging/mirrord.sysusers $(DESTDIR)$(SYSUSERSDIR)/mirrord.conf
	install -m 0644 packaging/mirrord.conf.example $(DESTDIR)$(DOCDIR)/mirrord/examples/
	install -m 0644 docs/PACKAGING.md $(DESTDIR)$(DOCDIR)/mirrord/
	@$(call pkg_install_conf,packaging/mirrord.conf.example,$(DESTDIR)$(SYSCONFDIR)/mirrord/mirrord.conf)

# Removes what install put there (whatever was built then), and the folders
# it made if they are left empty; settings under SYSCONFDIR stay.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/mirrorfs $(DESTDIR)$(BINDIR)/mirrorfs-poll $(DESTDIR)$(BINDIR)/mirrord \
		$(DESTDIR)$(MANDIR)/man1/mirrorfs.1 $(DESTDIR)$(MANDIR)/man1/mirrorfs-poll.1 \
		$(DESTDIR)$(MANDIR)/man8/mirrord.8 '$(DESTDIR)$(UNITDIR)/mirrorfs-poll@.service' \
		$(DESTDIR)$(LIBEXECDIR)/mirrorfs/mirrorfs-service $(DESTDIR)$(LIBEXECDIR)/mirrord/mirrord-service \
		'$(DESTDIR)$(UNITDIR)/mirrorfs@.service' $(DESTDIR)$(UNITDIR)/mirrord.service \
		$(DESTDIR)$(SYSUSERSDIR)/mirrord.conf \
		$(DESTDIR)$(DOCDIR)/mirrorfs/examples/mirrorfs.conf.example $(DESTDIR)$(DOCDIR)/mirrorfs/PACKAGING.md \
		$(DESTDIR)$(DOCDIR)/mirrord/examples/mirrord.conf.example $(DESTDIR)$(DOCDIR)/mirrord/PACKAGING.md
	-rmdir $(DESTDIR)$(LIBEXECDIR)/mirrorfs $(DESTDIR)$(LIBEXECDIR)/mirrord \
		$(DESTDIR)$(DOCDIR)/mirrorfs/examples $(DESTDIR)$(DOCDIR)/mirrorfs \
		$(DESTDIR)$(DOCDIR)/mirrord/examples $(DESTDIR)$(DOCDIR)/mirrord 2>/dev/null
	@echo "kept: $(DESTDIR)$(SYSCONFDIR)/mirrord, $(DESTDIR)$(SYSCONFDIR)/mirrorfs (settings)"

# ---------------------------------------------------------------- .deb

PKG_STAGE := build/pkg
# Debian's layout for bookworm: units in /lib/systemd/system.
PKG_DEB_DIRS := PREFIX=/usr UNITDIR=/lib/systemd/system SYSUSERSDIR=/usr/lib/sysusers.d SYSCONFDIR=/etc

pkg-version-check: $(BUILD)/mirrorfs
	@v=$$($(BUILD)/mirrorfs --version | awk '{ print $$2 }'); \
	if [ "$$v" != "$(PKG_VERSION)" ]; then \
		echo "packaging: $(BUILD)/mirrorfs --version says '$$v', packaging/VERSION says '$(PKG_VERSION)'" >&2; \
		exit 1; fi

deb: all pkg-version-check
	@if [ "$(BUILD)" != build ]; then echo "make deb: not from a sanitizer build (BUILD=$(BUILD))" >&2; exit 1; fi
	@# make SANITIZE=1 leaves build/PROG as links to the sanitizer binaries.
	@if ldd $(PROGS:%=$(BUILD)/%) 2>/dev/null | grep -qE 'lib(a|ub|t|l)san'; then \
		echo "make deb: $(BUILD)/ holds sanitizer binaries (make SANITIZE=1): run make clean first" >&2; exit 1; fi
	@command -v dpkg-shlibdeps >/dev/null || { echo "make deb: dpkg-shlibdeps missing (make deps installs dpkg-dev)" >&2; exit 1; }
	rm -rf $(PKG_STAGE) build/mirrorfs_*.deb build/mirrord_*.deb
	$(MAKE) --no-print-directory install-mirrorfs DESTDIR=$(CURDIR)/$(PKG_STAGE)/mirrorfs $(PKG_DEB_DIRS) >/dev/null
	$(MAKE) --no-print-directory install-mirrord DESTDIR=$(CURDIR)/$(PKG_STAGE)/mirrord $(PKG_DEB_DIRS) >/dev/null
	packaging/mkdeb.sh mirrorfs $(PKG_STAGE)/mirrorfs build $(PKG_VERSION)
	packaging/mkdeb.sh mirrord $(PKG_STAGE)/mirrord build $(PKG_VERSION)

# Installs the packages on this machine (root), runs a mirror with them and
# purges them again: for CI and fresh machines.
test-package: deb
	packaging/test-package.sh

.PHONY: install install-mirrorfs install-mirrord uninstall deb pkg-version-check test-package
