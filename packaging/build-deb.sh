#!/bin/sh
# packaging/build-deb.sh [ARCH] - build build/mbgate_<version>_<arch>.deb.
#
# The package is built in a staging copy of the working tree (the files git
# tracks plus untracked ones that are not ignored, as they are on disk, so
# uncommitted work is packaged), under build/deb-staging/. Nothing is
# written to the source tree outside build/.
#
#   ARCH              Debian architecture to build for (default: the host's,
#                     or $DEB_HOST_ARCH). Another architecture (arm64,
#                     armhf) cross-builds with dpkg-buildpackage -a ARCH
#                     and the cross and nocheck build profiles: Debian's
#                     cross compiler (crossbuild-essential-ARCH) and the
#                     libraries' -dev packages of ARCH (multiarch,
#                     libmodbus-dev:ARCH ...) must be installed, as
#                     `make deps ARCH=ARCH` installs them.
#   CC, PKG_CONFIG    passed on to the build when set (default: debhelper's
#                     choice, <triplet>-gcc / <triplet>-pkg-config for a
#                     cross build: dh_auto_build puts them on make's
#                     command line).
#   MBGATE_DEB_VERSION
#                     build this package version instead of the one in
#                     packaging/debian/changelog (a changelog entry is added
#                     in the staging copy), e.g. 0.1.0+test1 for upgrade
#                     tests. Without it the changelog's version must equal
#                     the Makefile's VERSION.
#
# Prints the path of the .deb on its last line.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

die() { echo "build-deb: $*" >&2; exit 1; }

ARCH=${1:-${DEB_HOST_ARCH:-$(dpkg-architecture -qDEB_HOST_ARCH)}}
BUILD_ARCH=$(dpkg-architecture -qDEB_BUILD_ARCH)
HOST_GNU_TYPE=$(dpkg-architecture -a"$ARCH" -qDEB_HOST_GNU_TYPE 2>/dev/null) ||
    die "'$ARCH' is not a Debian architecture (such as amd64, arm64, armhf)"

for tool in dpkg-buildpackage dpkg-parsechangelog dh fakeroot; do
    command -v "$tool" >/dev/null ||
        die "$tool not found (apt-get install dpkg-dev debhelper fakeroot)"
done

MAKE_VERSION=$(sed -n 's/^VERSION[[:space:]]*[:?]*=[[:space:]]*\([^[:space:]]*\).*/\1/p' Makefile | head -n 1)
[ -n "$MAKE_VERSION" ] || die "no VERSION in Makefile"
CL_VERSION=$(dpkg-parsechangelog -l packaging/debian/changelog -SVersion)

if [ -n "${MBGATE_DEB_VERSION:-}" ]; then
    VERSION=$MBGATE_DEB_VERSION
    case "$VERSION" in
    [0-9]*) ;;
    *) die "MBGATE_DEB_VERSION=$VERSION: a Debian version starts with a digit" ;;
    esac
elif [ "$CL_VERSION" != "$MAKE_VERSION" ]; then
    die "packaging/debian/changelog is at $CL_VERSION but the Makefile's VERSION is $MAKE_VERSION: add a changelog entry for $MAKE_VERSION"
else
    VERSION=$CL_VERSION
fi

OUT=$ROOT/build
TOP=$OUT/deb-staging/$VERSION-$ARCH
STAGE=$TOP/mbgate-$VERSION
rm -rf "$TOP"
mkdir -p "$STAGE"

# The working tree's files: tracked (unless deleted) and untracked but not
# ignored. Outside a git checkout (an unpacked tarball): everything but
# build/ and .git/.
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$ROOT" ls-files -co --exclude-standard -z |
        tr '\0' '\n' | grep -v '^build/' |
        while IFS= read -r f; do [ -e "$f" ] || [ -L "$f" ] && printf '%s\n' "$f"; done |
        tar -cf - --no-recursion -T - | tar -xf - -C "$STAGE"
else
    tar -cf - --exclude=./build --exclude=./.git . | tar -xf - -C "$STAGE"
fi
rm -rf "$STAGE/debian"
cp -a packaging/debian "$STAGE/debian"

if [ -n "${MBGATE_DEB_VERSION:-}" ] && [ "$VERSION" != "$CL_VERSION" ]; then
    {
        printf 'mbgate (%s) unstable; urgency=medium\n\n' "$VERSION"
        printf '  * Build of the working tree at %s.\n\n' \
            "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
        printf ' -- %s  %s\n\n' "$(dpkg-parsechangelog -l packaging/debian/changelog -SMaintainer)" \
            "$(date -R)"
        cat packaging/debian/changelog
    } >"$STAGE/debian/changelog"
fi

set -- -us -uc -b --jobs-try=auto
if [ "$ARCH" != "$BUILD_ARCH" ]; then
    # Cross build. The test suites do not run at package build time anyway
    # (debian/rules); nocheck says so to dh, which otherwise warns that
    # tests cannot run in a cross build. CC defaults to the cross compiler
    # (dh_auto_build would pick the same one; dpkg-buildpackage warns when
    # $CC does not build for ARCH).
    : "${CC:=$HOST_GNU_TYPE-gcc}"
    command -v "${CC%% *}" >/dev/null ||
        die "$CC not found: the cross build for $ARCH needs crossbuild-essential-$ARCH and the $ARCH -dev packages (make deps ARCH=$ARCH)"
    DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:+$DEB_BUILD_OPTIONS }nocheck"
    export DEB_BUILD_OPTIONS
    set -- "$@" -a "$ARCH" -Pcross,nocheck
fi
[ -z "${CC:-}" ] || export CC
[ -z "${PKG_CONFIG:-}" ] || export PKG_CONFIG
# Run from make (make deb ARCH=arm64): the calling make's command-line
# variables would reach the package build's make through MAKEFLAGS.
unset MAKEFLAGS MFLAGS MAKEOVERRIDES MAKELEVEL

echo "build-deb: building mbgate $VERSION for $ARCH in $STAGE" >&2
(cd "$STAGE" && dpkg-buildpackage "$@") >"$TOP/build.log" 2>&1 || {
    tail -n 40 "$TOP/build.log" >&2
    if grep -q 'Unmet build dependencies' "$TOP/build.log"; then
        die "build dependencies for $ARCH missing: make deps ARCH=$ARCH (full log: $TOP/build.log)"
    fi
    die "dpkg-buildpackage failed (full log: $TOP/build.log)"
}

DEB=mbgate_${VERSION}_${ARCH}.deb
[ -f "$TOP/$DEB" ] || die "dpkg-buildpackage made no $DEB (see $TOP/build.log)"
mv -f "$TOP/$DEB" "$OUT/$DEB"
# The detached debug symbols, for crash reports from the field.
for f in "$TOP"/mbgate-dbgsym_"${VERSION}"_"${ARCH}".*deb; do
    [ -f "$f" ] && mv -f "$f" "$OUT/"
done
echo "$OUT/$DEB"
