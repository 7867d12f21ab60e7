#!/bin/bash
# packaging/deps.sh ARCHS PKG... - install the Debian packages of `make deps`.
#
#   ARCHS   the Makefile's ARCH: one or more Debian architectures. Those that
#           are not this machine's are added to dpkg's architectures first,
#           and removed again if installing fails (an architecture whose
#           indexes do not download would make every later apt-get update
#           fail).
#   PKG...  the packages, PKG:ARCH for another architecture's; the ones
#           installed already are skipped (nothing to do: apt is not run).
#
# Why there is more than `apt-get update && apt-get install`: a Multi-Arch:
# same package (the libraries, linux-libc-dev) must be installed at one
# version for all architectures. This machine's own packages usually come
# from bookworm-security; when the mirror serves a stale or broken index of
# the foreign architecture (apt-get update: "File has unexpected size ...
# Mirror sync in progress?"), apt only sees older foreign versions and
# refuses ("libkrb5-3:armhf : Depends: libssl3:armhf (>= 3.0.0) but it is
# not going to be installed"). So:
#   - apt-get update failing is tolerated as long as apt has a package index
#     for each architecture (it keeps using the ones that did download);
#   - when the plain install fails, apt's simulation is repeated and, for
#     each Multi-Arch: same package of a foreign architecture it involves
#     whose installed version V (on another architecture) is not what apt
#     offers for that architecture:
#       1. an index has V for the architecture: PKG:ARCH=V is asked for;
#       2. else PKG_V_ARCH.deb is fetched from the pool directory of the
#          installed package's file (same mirror) and given to apt as a
#          local file, so apt still resolves everything else. Its control
#          fields are checked, but no signed index vouches for it: the line
#          printed says so;
#       3. else, if every architecture involved has the version apt offers
#          for ARCH, all of them are installed at that version (a downgrade
#          of this machine's package, printed with the reason);
#     until the simulation succeeds or nothing more can be fixed. Packages
#     pulled in that way are marked automatically installed again.
# The normal path (apt succeeds) is the plain update and install.
set -u
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

ARCHS=${1:-}
shift || true
BUILD=$(dpkg --print-architecture)
FOREIGN=
for a in $ARCHS; do [ "$a" = "$BUILD" ] || FOREIGN="$FOREIGN $a"; done
ADDED=
TMP=

cleanup() { [ -z "$TMP" ] || rm -rf "$TMP"; }
trap cleanup EXIT
# fail REASON: undo the architectures added here, one line, exit 1.
fail() {
    local a
    for a in $ADDED; do dpkg --remove-architecture "$a" 2>/dev/null || true; done
    echo "deps: installing for ARCH=${ARCHS:-$BUILD} failed: $1${ADDED:+ (architecture$ADDED removed again)}" >&2
    exit 1
}

for a in $FOREIGN; do
    dpkg-architecture -a"$a" -qDEB_HOST_GNU_TYPE >/dev/null 2>&1 ||
        { echo "deps: ARCH=$a is not a Debian architecture" >&2; exit 1; }
    dpkg --print-foreign-architectures | grep -qx "$a" ||
        { dpkg --add-architecture "$a" && ADDED="$ADDED $a"; }
done

missing=()
for p in "$@"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -gt 0 ] || exit 0
echo "installing: ${missing[*]}"

updated=
apt-get update -qq || updated=" (apt-get update failed)"
for a in $FOREIGN; do
    apt-cache policy | grep -q " $a Packages\$" || fail "apt has no package index for $a$updated"
done
[ -z "$updated" ] ||
    echo "deps: apt-get update failed for some indexes (above); continuing with the indexes apt has"

apt-get install -y -qq "${missing[@]}" && exit 0
[ -n "$FOREIGN" ] || fail "apt-get install failed"

# ---- the fallback: Multi-Arch: same versions that differ between architectures
TMP=$(mktemp -d /tmp/mbgate-deps.XXXXXX)
chmod 755 "$TMP"    # apt reads local .deb files as _apt
KEYS=()             # what apt is asked for, in order: PKG:ARCH
declare -A SPEC=() TRIED=() REQUESTED=()
for p in "${missing[@]}"; do
    k=$p; case $k in *:*) ;; *) k=$k:$BUILD ;; esac
    KEYS+=("$k"); SPEC[$k]=$p; REQUESTED[$k]=1
done
DOWNGRADE=

# set_spec PKG:ARCH SPEC: ask apt for SPEC instead of PKG:ARCH.
set_spec() {
    [ -n "${SPEC[$1]+x}" ] || KEYS+=("$1")
    SPEC[$1]=$2
}
specs() { local k; for k in "${KEYS[@]}"; do printf '%s\n' "${SPEC[$k]}"; done; }
simulate() {
    local -a s
    mapfile -t s < <(specs)
    apt-get install -s -q ${DOWNGRADE:+--allow-downgrades} "${s[@]}" >"$TMP/sim.out" 2>&1
}
candidate() { apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p' | grep -vx '(none)'; }
# has_version PKG:ARCH V: an index has V (apt-cache show succeeds either way).
has_version() {
    apt-cache madison "$1" 2>/dev/null |
        awk -F'|' -v v="$2" '{ gsub(/ /, "", $2) } $2 == v { f = 1 } END { exit !f }'
}

# fix PKG ARCH: see the header. 0: something changed, 1: nothing to fix or
# not fixable.
fix() {
    local n=$1 a=$2 ref r v cand uri furi file fields inst x
    [ -z "${TRIED[$n:$a]:-}" ] || return 1
    TRIED[$n:$a]=1
    # An installed Multi-Arch: same instance of another architecture.
    inst=$(dpkg-query -W -f='${db:Status-Abbrev}|${Architecture}|${Version}|${Multi-Arch}\n' "$n:*" 2>/dev/null |
        awk -F'|' '$1 ~ /^ii/ && $4 == "same" {print $2 "|" $3}')
    printf '%s\n' "$inst" | grep -q "^$a|" && return 1
    ref=$(printf '%s\n' "$inst" | head -n 1)
    [ -n "$ref" ] || return 1
    r=${ref%%|*} v=${ref#*|}
    cand=$(candidate "$n:$a")
    [ "$cand" != "$v" ] || return 1
    if has_version "$n:$a" "$v"; then
        echo "deps: $n:$a: asking for $v (the version of the installed $n:$r) instead of ${cand:-nothing}"
        set_spec "$n:$a" "$n:$a=$v"
        return 0
    fi
    # 2. the pool file next to the installed one's
    uri=$(apt-get download --print-uris "$n:$r=$v" 2>/dev/null | sed -n "1s/^'\([^']*\)'.*/\1/p")
    case $uri in
    *_"$r".deb)
        furi=${uri%_"$r".deb}_$a.deb
        file=$TMP/${n}_${v//:/%3a}_$a.deb
        if /usr/lib/apt/apt-helper download-file "$furi" "$file" >"$TMP/fetch.out" 2>&1; then
            fields=
            for x in Package Version Architecture Multi-Arch; do
                fields="$fields $(dpkg-deb -f "$file" "$x" 2>/dev/null)"
            done
            if [ "$fields" = " $n $v $a same" ]; then
                echo "deps: $n:$a $v (the version of the installed $n:$r) is not in apt's $a index (it offers ${cand:-nothing}): installing the mirror's pool file $furi (no signed index vouches for it)"
                set_spec "$n:$a" "$file"
                return 0
            fi
            echo "deps: $furi is not $n $v for $a ($fields); not used"
        fi
        ;;
    esac
    # 3. every architecture at the version apt offers for ARCH
    [ -n "$cand" ] || { echo "deps: $n:$a: no version for $a (installed: $v)"; return 1; }
    for x in $(printf '%s\n' "$inst" | cut -d'|' -f1); do
        has_version "$n:$x" "$cand" ||
            { echo "deps: $n:$a $v is neither in apt's $a index nor in the pool, and $n:$x has no $cand (the $a version)"; return 1; }
    done
    for x in $(printf '%s\n' "$inst" | cut -d'|' -f1); do set_spec "$n:$x" "$n:$x=$cand"; done
    set_spec "$n:$a" "$n:$a=$cand"
    if dpkg --compare-versions "$cand" lt "$v"; then
        DOWNGRADE=1
        echo "deps: DOWNGRADE $n from $v to $cand on $(printf '%s\n' "$inst" | cut -d'|' -f1 | tr '\n' ' ')and installing $n:$a $cand: $v is neither in apt's $a index nor in the pool (${furi:+$furi: not fetched}), and Multi-Arch: same needs one version on all architectures"
    else
        echo "deps: $n moves from $v to $cand (the $a version) on all architectures: $v is neither in apt's $a index nor in the pool"
    fi
    return 0
}

# The foreign packages (PKG:ARCH) apt's refusal names.
named() {
    sed -n '/unmet dependencies:/,/^E:/p' "$TMP/sim.out" |
        grep -oE '^ [^ ]+ :|(Pre-?)?Depends: [^ ]+|Breaks: [^ ]+|Conflicts: [^ ]+' |
        sed -E 's/^ //; s/ :$//; s/^[A-Za-z-]+: //' | sort -u
}
# fix_all PKG:ARCH...: fix those of a foreign architecture; 0 if any changed.
fix_all() {
    local k a rc=1
    for k in "$@"; do
        for a in $FOREIGN; do
            case $k in *:"$a") fix "${k%:"$a"}" "$a" && rc=0 ;; esac
        done
    done
    return $rc
}

# Not a dependency problem (a download failed ...): nothing to resolve.
simulate && fail "apt-get install failed"
echo "deps: apt refused; looking for Multi-Arch: same packages whose versions differ between $BUILD and$FOREIGN"
ok=
for _ in 1 2 3 4 5 6 7 8 9 10; do
    mapfile -t names < <(named)
    if ! fix_all "${names[@]}"; then
        # Nothing named is fixable: the dependency closure of the foreign
        # packages (apt does not always name the package at fault).
        mapfile -t names < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
            --no-breaks --no-replaces --no-enhances "${names[@]}" "${!REQUESTED[@]}" 2>/dev/null |
            grep -E '^[^ <]' | sort -u)
        fix_all "${names[@]}" || break
    fi
    if simulate; then ok=1; break; fi
done
if [ -z "$ok" ]; then
    grep -E '^ |^E:|unmet' "$TMP/sim.out" | tail -n 25 >&2
    fail "apt cannot resolve the dependencies (see above), and no differing Multi-Arch: same versions that could be fixed explain it"
fi

manual=$(apt-mark showmanual)
mapfile -t s < <(specs)
apt-get install -y -qq ${DOWNGRADE:+--allow-downgrades} "${s[@]}" || fail "apt-get install failed"
# What the fallback added (dependencies) is automatically installed again,
# unless it was installed by hand before.
auto=()
for k in "${KEYS[@]}"; do
    [ -z "${REQUESTED[$k]:-}" ] || continue
    printf '%s\n' "$manual" | grep -qxF -e "$k" -e "${k%:"$BUILD"}" || auto+=("$k")
done
[ ${#auto[@]} -eq 0 ] || apt-mark auto "${auto[@]}" >/dev/null
echo "deps: installed with the fallback above"
