# Sourced by scripts that need Debian packages; the caller defines `log MESSAGE`.
#
# install_debian_packages PACKAGE...: installs those not installed yet (with sudo unless root).
install_debian_packages() {
    local package missing=() sudo_cmd=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
    done
    ((${#missing[@]})) || return 0
    log "installing Debian packages: ${missing[*]}"
    [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
}
