# Shared set-up for ./kiln and .ci/run: a JDK >= 25 and the host packages Kiln needs (Debian, root).
kiln_pick_jdk() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]] && "$JAVA_HOME/bin/java" -version 2>&1 | grep -qE 'version "(2[5-9]|[3-9][0-9])'; then
    return
  fi
  for d in /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/java-25-openjdk-amd64 /usr/lib/jvm/*25*; do
    if [[ -x "$d/bin/java" ]]; then export JAVA_HOME="$d"; return; fi
  done
  echo "kiln: no JDK 25 found under /usr/lib/jvm; install one (e.g. apt-get install openjdk-25-jdk) and set JAVA_HOME" >&2
  exit 1
}

# kiln_setup_host [--installed]: an installed `kiln` (./kiln install) runs prebuilt jars and needs no Maven.
kiln_setup_host() {
  kiln_pick_jdk
  export PATH="$JAVA_HOME/bin:$PATH"
  # Maven 3.8's bundled Guava warns about sun.misc.Unsafe on JDK 25; the warning is noise for our users.
  export MAVEN_OPTS="${MAVEN_OPTS:-} --sun-misc-unsafe-memory-access=allow"
  local missing=()
  command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
  command -v qemu-img >/dev/null || missing+=(qemu-utils)   # disks: overlays, checks, conversions
  [[ "${1:-}" == --installed ]] || command -v mvn >/dev/null || missing+=(maven)
  command -v dpkg-deb >/dev/null || missing+=(dpkg)
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)   # Debian images: the root file system
  command -v mke2fs >/dev/null || missing+=(e2fsprogs)        # Debian images: the ext4 disk
  command -v mcopy >/dev/null || missing+=(mtools)            # cloud-init cidata volumes: FAT, written without mounting
  if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
      echo "kiln: missing packages: ${missing[*]}; install them with apt-get (needs root)" >&2
      exit 1
    fi
    echo "kiln: installing ${missing[*]} (apt-get)…" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  fi
  # The guest image is made from packages fetched with `apt-get download`: that needs apt's lists.
  if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    echo "kiln: refreshing apt's package lists (apt-get update) for the guest image…" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || true
  fi
}

# Kiln's version, from the one place it is set: the root pom's `revision`.
kiln_version() {
  sed -n 's:.*<revision>\(.*\)</revision>.*:\1:p' "$1/pom.xml" | head -1
}

# Firecracker release binaries are not packaged: use FIRECRACKER_BIN and JAILER_BIN when set, else the newest ones in
# /opt/firecracker (the README says how to get them there).
kiln_find_firecracker() {
  if [[ -z "${FIRECRACKER_BIN:-}" ]]; then
    local fc
    fc=$(ls /opt/firecracker/firecracker-v* 2>/dev/null | sort -V | tail -1 || true)
    [[ -n "$fc" && -x "$fc" ]] && export FIRECRACKER_BIN="$fc"
  fi
  if [[ -z "${JAILER_BIN:-}" ]]; then
    local jl
    jl=$(ls /opt/firecracker/jailer-v* 2>/dev/null | sort -V | tail -1 || true)
    [[ -n "$jl" && -x "$jl" ]] && export JAILER_BIN="$jl"
  fi
  return 0
}
