#!/usr/bin/env bash
# Puts cpp-httplib 0.18.7 (Debian 13's source package, Debian's security patches
# applied, then egress's own patch) in third_party/httplib/src/, where Bazel's
# offline build finds it, split into httplib.h and httplib.cc the way upstream's
# split.py does, so that its implementation is compiled once rather than in every
# file that includes it. Runs once: does nothing when both files are there and
# the header carries the expected version and patch marker.
#
# The source comes from the Debian mirror this machine's apt already uses (read from
# apt's own configuration, so no host is written here), with the suite trixie,
# through a private apt state directory: the system's apt configuration and lists
# are untouched, and apt verifies the archive's signatures with the system keyring.
# Usage: scripts/fetch-httplib.sh
set -euo pipefail
cd "$(dirname "$0")/.."

readonly version=0.18.7
readonly debian_version=0.18.7-1+deb13u1
readonly dest=third_party/httplib/src
readonly patch_file=third_party/httplib/egress.patch

if [ -f "$dest/httplib.h" ] && [ -f "$dest/httplib.cc" ] &&
   grep -q "CPPHTTPLIB_VERSION \"$version\"" "$dest/httplib.h" &&
   grep -q "EGRESS_HTTPLIB_PATCH 3" "$dest/httplib.h"; then
  exit 0
fi

for tool in apt-get dpkg-source patch; do
  command -v "$tool" >/dev/null || {
    echo "fetch-httplib: $tool is missing (scripts/setup.sh installs dpkg-dev)" >&2
    exit 1
  }
done

# The machine's Debian archive: the URI apt uses for this release's main component.
mirror=$(scripts/debian-mirror)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/src"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
echo "deb-src [signed-by=$keyring] $mirror trixie main" >"$work/sources.list"
apt_private=(
  -o "Dir::Etc::sourcelist=$work/sources.list" -o Dir::Etc::sourceparts=-
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
  -o APT::Sandbox::User=root -qq
)
echo "fetch-httplib: cpp-httplib $debian_version source from $mirror (trixie)" >&2
apt-get "${apt_private[@]}" update >/dev/null
(cd "$work/src" && apt-get "${apt_private[@]}" source --download-only \
  "cpp-httplib=$debian_version" >/dev/null)
# apt checked the files against the signed Release and Sources indexes; the
# uploader's own .dsc signature would need debian-keyring, so it is not re-checked.
(cd "$work/src" && dpkg-source --no-check -x "cpp-httplib_${debian_version}.dsc" tree >/dev/null)
patch --quiet --forward -p1 -d "$work/src/tree" <"$patch_file"

mkdir -p "$dest"
# What upstream's split.py does: the lines between the two border markers are
# the implementation; they go to httplib.cc, without `inline`.
awk -v h="$dest/httplib.h.new" -v cc="$dest/httplib.cc" '
  BEGIN { impl = 0; print "#include \"httplib.h\"\nnamespace httplib {" > cc }
  index($0, "// ----------------------------------------------------------------------------") == 1 {
    impl = !impl; next
  }
  impl { gsub(/inline /, ""); print > cc; next }
  { print > h }
  END { print "} // namespace httplib" > cc }
' "$work/src/tree/httplib.h"
cp "$work/src/tree/LICENSE" "$dest/LICENSE"
mv "$dest/httplib.h.new" "$dest/httplib.h"
echo "fetch-httplib: $dest/httplib.h ($version, Debian's patches and $patch_file)" >&2
