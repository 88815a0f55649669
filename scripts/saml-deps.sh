# Sourced by scripts/test and scripts/bench: installs from Debian's packages what coreauth's
# `saml` feature links (xmlsec, libxml2, OpenSSL), what bindgen needs to read their headers
# (libclang), and the openssl command the SAML tests make certificates with, when missing.
install_saml_dependencies() {
  local missing=()
  pkg-config --exists xmlsec1-openssl libxml-2.0 openssl 2>/dev/null \
    || missing+=(pkg-config libxmlsec1-dev libxml2-dev libssl-dev)
  compgen -G "/usr/lib/llvm-*/lib/clang/*/include/stddef.h" >/dev/null || missing+=(libclang-dev)
  command -v openssl >/dev/null || missing+=(openssl)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian's ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}
