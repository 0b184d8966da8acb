# Sourced by scripts/test and scripts/demo: install the Debian packages named
# in the given lists (one name per line; # starts a comment) that are missing.
names() { [ $# -gt 0 ] && sed 's/#.*//' "$@" | xargs -r; true; }

install_apt() {
  local missing=() pkg
  for pkg in $(names "$@"); do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "$(basename "$0"): installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}
