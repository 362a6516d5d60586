#!/usr/bin/env bash
# Fetches QEMU's own Python harness (qemu.machine.QEMUMachine, qemu.qmp) from QEMU's source as Debian ships
# it, for the host's QEMU version, and prints the folder to put on PYTHONPATH (the tree's python/ folder).
#
#   kiln-bench/peers/fetch-qemu-python.sh        prints e.g. ~/.cache/kiln/peers/qemu-7.2+dfsg/python
#
# `apt-get source` needs deb-src entries. The host's apt set-up is left alone: this script runs apt with a
# private configuration under the cache folder, whose deb-src entries mirror the host's Debian deb entries.
# Needs: apt-get, dpkg-source (dpkg-dev) and network access to the Debian archive. Cached after the first run.
set -euo pipefail
cache="${KILN_PEERS_CACHE:-${KILN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kiln}/peers}"
mkdir -p "$cache"

# One run at a time (a second caller waits for the first).
exec 9>"$cache/.fetch.lock"
flock 9

found() {
  local d
  for d in "$cache"/qemu-*/python; do
    if [[ -f "$d/qemu/machine/machine.py" && -d "$d/qemu/qmp" ]]; then echo "$d"; return 0; fi
  done
  return 1
}
if found; then exit 0; fi

command -v apt-get >/dev/null || { echo "fetch-qemu-python: apt-get not found (Debian or Ubuntu host needed)" >&2; exit 1; }
if ! command -v dpkg-source >/dev/null; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "fetch-qemu-python: dpkg-source missing; install dpkg-dev (needs root)" >&2
    exit 1
  fi
  echo "fetch-qemu-python: installing dpkg-dev (apt-get)…" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends dpkg-dev >&2
fi

# A private apt configuration: deb-src twins of the host's Debian entries, own lists and caches.
apt="$cache/apt"
mkdir -p "$apt/sources.list.d" "$apt/lists/partial" "$apt/cache/archives/partial"
src="$apt/sources.list.d/deb-src.sources"
: >"$src"
deb822_to_src() {   # keeps Debian stanzas of a deb822 file, with Types: deb-src
  awk 'BEGIN { RS=""; ORS="\n\n" }
       /(^|\n)Types:[^\n]*deb([ \n]|$)/ && /debian/ {
         gsub(/(^|\n)Types:[^\n]*/, "\nTypes: deb-src"); sub(/^\n/, ""); print }' "$1"
}
for f in /etc/apt/sources.list.d/*.sources; do
  [[ -f "$f" ]] && deb822_to_src "$f" >>"$src"
done
list="$apt/sources.list"
: >"$list"
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [[ -f "$f" ]] || continue
  # one-line entries: deb [opts] URI suite components → deb-src, Debian archives only
  sed -nE 's/^[[:space:]]*deb([[:space:]]+\[[^]]*\])?[[:space:]]+([^[:space:]]*debian[^[:space:]]*)[[:space:]]+(.*)$/deb-src\1 \2 \3/p' "$f" >>"$list"
done
if [[ ! -s "$src" && ! -s "$list" ]]; then
  echo "fetch-qemu-python: no Debian entries found in /etc/apt to derive deb-src entries from" >&2
  exit 1
fi
opts=(-o "Dir::Etc::SourceList=$list" -o "Dir::Etc::SourceParts=$apt/sources.list.d"
      -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o "Debug::NoLocking=1"
      -o "APT::Sandbox::User=root")
echo "fetch-qemu-python: apt-get update (deb-src, private lists under $apt)…" >&2
apt-get "${opts[@]}" -q update >&2

# The source of the QEMU that is installed, or the newest one when the exact version is gone.
version="$(dpkg-query -W -f='${source:Version}' qemu-system-x86 2>/dev/null || true)"
work="$(mktemp -d "$cache/.src-XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"
echo "fetch-qemu-python: apt-get source qemu${version:+=$version} (≈ 100 MiB)…" >&2
if ! apt-get "${opts[@]}" -q source "qemu${version:+=$version}" >&2; then
  echo "fetch-qemu-python: qemu=$version not in the source lists; taking the newest" >&2
  apt-get "${opts[@]}" -q source qemu >&2
fi
tree="$(find . -mindepth 1 -maxdepth 1 -type d -name 'qemu-*' | head -1)"
[[ -n "$tree" && -d "$tree/python/qemu" ]] || { echo "fetch-qemu-python: no python/qemu in the unpacked source" >&2; exit 1; }
# Keep only what the peer needs: the python/ folder (standard library only) and the version.
dest="$cache/$(basename "$tree")"
rm -rf "$dest"
mkdir -p "$dest"
cp -a "$tree/python" "$dest/"
[[ -f "$tree/VERSION" ]] && cp "$tree/VERSION" "$dest/"
found
