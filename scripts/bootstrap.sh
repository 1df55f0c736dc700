#!/usr/bin/env bash
# Prepare a fresh Debian 12 / Raspberry Pi OS Bookworm machine for development:
# the Debian packages the tests and the demo use (as root, or through sudo), `uv`
# (in a small tool venv, .tools/, when it is not on PATH), and the project's locked
# environment (.venv, from uv.lock). Safe to run again: it only installs what is missing.
#
#   scripts/bootstrap.sh            # everything
#   scripts/bootstrap.sh --no-apt   # skip the Debian packages
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Runtime + build of pyscard/simpleaudio (no Linux wheels), and the real stacks the
# tests drive: pcscd with the vpcd virtual reader, mosquitto, ALSA, systemd-analyze and
# journald, and Chromium (headless, with a Japanese font) for the kiosk screen; and what
# scripts/build-deb and its test use: debhelper, dh-virtualenv, lintian, mmdebstrap (a
# clean Debian 12 root to install the package into).
APT_PACKAGES=(python3 python3-venv python3-dev build-essential pkg-config swig
              pcscd libccid libpcsclite1 libpcsclite-dev vsmartcard-vpcd pcsc-tools
              libusb-1.0-0 libasound2 libasound2-dev alsa-utils
              mosquitto mosquitto-clients rabbitmq-server systemd procps ca-certificates
              chromium fonts-ipafont-gothic
              debhelper dh-virtualenv devscripts lintian mmdebstrap
              postgresql softhsm2 libfaketime faketime)

if [ "${1:-}" != "--no-apt" ]; then
    missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        echo "bootstrap: installing Debian packages: ${missing[*]}"
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
        # The tests start their own private pcscd, mosquitto and rabbitmq (an MQTT 3.1.1
        # broker) on free ports; a system instance that apt may start does not get in
        # their way.
        $sudo env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
fi

UV=$(command -v uv || true)
if [ -z "$UV" ]; then
    if [ ! -x .tools/bin/uv ]; then
        echo "bootstrap: installing uv into .tools/"
        python3 -m venv .tools
        .tools/bin/pip install -q "uv>=0.13,<0.14"  # the uv that wrote uv.lock
    fi
    UV=$PWD/.tools/bin/uv
fi
"$UV" sync --frozen --quiet --all-extras
echo "$UV"
