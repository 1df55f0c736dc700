#!/usr/bin/env bash
# Install sukumo-reader on Raspberry Pi OS Bookworm or Debian 12, as root, from a checkout:
# for development machines. Terminals get the Debian package (scripts/build-deb,
# docs/fleet.md), which needs no compiler and updates through apt.
#
#   sudo scripts/install.sh [--prefix /opt/sukumo-reader] [--no-apt]
#
# Idempotent: run it again (after `git pull`, or just to be sure) and every step that
# has nothing to do prints "unchanged". It never overwrites the technician's settings
# (/etc/sukumo-reader/reader.toml) or the terminal's key; it replaces the program, the
# unit and the system files it owns. Then: `sukumo-reader provision`, `sukumo-reader doctor`.
set -euo pipefail

SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX=/opt/sukumo-reader
SERVICE_USER=sukumo
CONFIG_DIR=/etc/sukumo-reader
STATE_DIR=/var/lib/sukumo-reader
RUN_APT=1
# Runtime: pcscd + libccid drive the RC-S300; libusb for the RC-S380 (nfcpy);
# alsa-utils gives the technician aplay. Build: pyscard and simpleaudio have no Linux
# wheels and compile against pcsc-lite and ALSA headers.
APT_PACKAGES=(pcscd libccid libpcsclite1 libusb-1.0-0 libasound2 alsa-utils
              python3 python3-venv python3-dev build-essential pkg-config swig
              libpcsclite-dev libasound2-dev ca-certificates mosquitto-clients)

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX="$2"; shift 2 ;;
        --no-apt) RUN_APT=0; shift ;;
        -h|--help) usage 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root (sudo)" >&2; exit 2; }

say() { printf '%-9s %s\n' "$1" "$2"; }

# install_file SRC DEST MODE: copy when the content or mode differs; print what happened.
install_file() {
    local src="$1" dest="$2" mode="$3"
    if [ -f "$dest" ] && cmp -s "$src" "$dest" && [ "$(stat -c %a "$dest")" = "${mode#0}" ]; then
        say unchanged "$dest"; return 1
    fi
    install -D -m "$mode" "$src" "$dest"
    say installed "$dest"; return 0
}

# install_dir DIR MODE OWNER GROUP
install_dir() {
    local dir="$1" mode="$2" owner="$3" group="$4"
    if [ -d "$dir" ] && [ "$(stat -c '%a %U %G' "$dir")" = "${mode#0} $owner $group" ]; then
        say unchanged "$dir/"; return
    fi
    install -d -m "$mode" -o "$owner" -g "$group" "$dir"
    say created "$dir/ ($mode $owner:$group)"
}

# sync_tree SRC DEST: make DEST an exact copy of SRC (no __pycache__).
sync_tree() {
    local src="$1" dest="$2"
    if [ -d "$dest" ] && diff -rq -x __pycache__ "$src" "$dest" >/dev/null 2>&1; then
        say unchanged "$dest/"; return
    fi
    rm -rf "$dest"
    mkdir -p "$dest"
    (cd "$src" && tar --exclude=__pycache__ -cf - .) | (cd "$dest" && tar -xf -)
    say copied "$dest/"
}

step_apt() {
    [ "$RUN_APT" -eq 1 ] || { say skipped "apt packages (--no-apt)"; return; }
    local missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    if [ ${#missing[@]} -eq 0 ]; then say unchanged "apt packages"; return; fi
    say apt "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

step_user() {
    if id "$SERVICE_USER" >/dev/null 2>&1; then
        say unchanged "user $SERVICE_USER"
    else
        useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "sukumo-reader terminal" "$SERVICE_USER"
        say created "user $SERVICE_USER"
    fi
    # plugdev: the RC-S380 udev rule; audio: the speaker; pcscd: only where the group exists.
    local group
    for group in plugdev audio pcscd; do
        getent group "$group" >/dev/null || continue
        if id -nG "$SERVICE_USER" | tr ' ' '\n' | grep -qx "$group"; then
            say unchanged "user $SERVICE_USER in group $group"
        else
            usermod -aG "$group" "$SERVICE_USER"
            say added "user $SERVICE_USER to group $group"
        fi
    done
    # The technician who ran `sudo install.sh` joins the service's group: it reads the
    # settings, status and queue, so the read-only commands work without sudo (the keys
    # stay 0600, the service's own). docs/technician.md, "Without root".
    local technician="${SUDO_USER:-}"
    if [ -n "$technician" ] && [ "$technician" != root ] && id "$technician" >/dev/null 2>&1; then
        if id -nG "$technician" | tr ' ' '\n' | grep -qx "$SERVICE_USER"; then
            say unchanged "user $technician in group $SERVICE_USER"
        else
            usermod -aG "$SERVICE_USER" "$technician"
            say added "user $technician to group $SERVICE_USER (log in again to use it)"
        fi
    fi
}

# The venv is rebuilt only when the source or the lock file changed (a stamp of hashes).
step_venv() {
    local stamp="$PREFIX/.installed-from" want
    want="$( (cd "$SOURCE" && find reader pyproject.toml uv.lock -type f ! -path '*__pycache__*' \
              -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1)"
    if [ -x "$PREFIX/bin/sukumo-reader" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        say unchanged "$PREFIX (venv)"; return
    fi
    [ -x "$PREFIX/bin/python" ] || /usr/bin/python3 -m venv "$PREFIX"
    # requirements.txt is uv.lock exported for pip (what a Pi has): the exact versions the
    # tests ran with. tests/test_requirements.py keeps it in step with uv.lock.
    "$PREFIX/bin/pip" install -q -r "$SOURCE/requirements.txt"
    "$PREFIX/bin/pip" install -q --no-deps "$SOURCE"
    echo "$want" > "$stamp"
    say installed "$PREFIX (venv, sukumo-reader $("$PREFIX/bin/sukumo-reader" --version | cut -d' ' -f2))"
}

step_files() {
    local dir
    for dir in sounds scripts firmware_config docs; do
        [ -d "$SOURCE/$dir" ] && sync_tree "$SOURCE/$dir" "$PREFIX/$dir"
    done
    if [ "$(readlink /usr/local/bin/sukumo-reader 2>/dev/null)" = "$PREFIX/bin/sukumo-reader" ]; then
        say unchanged /usr/local/bin/sukumo-reader
    else
        ln -sfn "$PREFIX/bin/sukumo-reader" /usr/local/bin/sukumo-reader
        say linked "/usr/local/bin/sukumo-reader -> $PREFIX/bin/sukumo-reader"
    fi
}

step_directories() {
    install_dir "$CONFIG_DIR" 0750 root "$SERVICE_USER"
    install_dir "$STATE_DIR" 0750 "$SERVICE_USER" "$SERVICE_USER"
    # Settings are the technician's once written: only the first install puts them there.
    local name
    for name in reader.toml ap-profiles.toml; do
        if [ -e "$CONFIG_DIR/$name" ]; then
            say kept "$CONFIG_DIR/$name (yours)"
        else
            install -m 0640 -o root -g "$SERVICE_USER" "$SOURCE/firmware_config/$name" \
                "$CONFIG_DIR/$name"
            say installed "$CONFIG_DIR/$name"
        fi
    done
}

step_system_files() {
    local fw="$SOURCE/firmware_config"
    if install_file "$fw/60-sukumo-reader.rules" /etc/udev/rules.d/60-sukumo-reader.rules 0644 \
            && [ -S /run/udev/control ]; then
        udevadm control --reload && udevadm trigger --subsystem-match=usb || true
    fi
    install_file "$fw/sukumo-reader-blacklist.conf" \
        /etc/modprobe.d/sukumo-reader-blacklist.conf 0644 || true
    install_file "$fw/journald-sukumo-reader.conf" \
        /etc/systemd/journald@sukumo-reader.conf.d/sukumo-reader.conf 0644 || true
    install_file "$fw/50-sukumo-pcscd.rules" /etc/polkit-1/rules.d/50-sukumo-pcscd.rules 0644 \
        || true
    # ALSA: only on a machine with a sound card and no asound.conf of its own (never
    # hijack a developer's or CI machine's audio set-up).
    if [ -e /etc/asound.conf ] && ! cmp -s "$fw/asound.conf" /etc/asound.conf; then
        say kept "/etc/asound.conf (not ours; ours is $PREFIX/firmware_config/asound.conf)"
    elif grep -qE '^ *[0-9]+ \[' /proc/asound/cards 2>/dev/null; then
        install_file "$fw/asound.conf" /etc/asound.conf 0644 || true
    else
        say skipped "/etc/asound.conf (no sound card)"
    fi
    step_boot_config "$fw/config.txt"
}

# Replace (or append) the marked block in /boot/firmware/config.txt: a Pi only.
step_boot_config() {
    local fragment="$1" target=/boot/firmware/config.txt new
    [ -f "$target" ] || { say skipped "$target (not a Raspberry Pi)"; return; }
    new="$(mktemp)"
    awk '/^# sukumo-reader begin$/{skip=1} !skip{print} /^# sukumo-reader end$/{skip=0}' \
        "$target" > "$new"
    sed -n '/^# sukumo-reader begin$/,/^# sukumo-reader end$/p' "$fragment" >> "$new"
    if cmp -s "$new" "$target"; then
        say unchanged "$target"
    else
        cp "$target" "$target.before-sukumo"
        cat "$new" > "$target"
        say updated "$target (reboot to apply; previous in $target.before-sukumo)"
    fi
    rm -f "$new"
}

step_unit() {
    local changed=0
    install_file "$SOURCE/systemd/sukumo-reader.service" \
        /etc/systemd/system/sukumo-reader.service 0644 && changed=1
    # Only a booted systemd can enable units (a container or CI has none as PID 1).
    if [ "$(ps -p 1 -o comm= 2>/dev/null)" != "systemd" ] || [ ! -d /run/systemd/system ]; then
        say skipped "systemctl enable (systemd is not PID 1 here)"; return
    fi
    [ "$changed" -eq 1 ] && systemctl daemon-reload
    systemctl is-enabled --quiet pcscd.socket 2>/dev/null || systemctl enable --now pcscd.socket
    if systemctl is-enabled --quiet sukumo-reader.service; then
        say unchanged "sukumo-reader.service enabled"
    else
        systemctl enable sukumo-reader.service
        say enabled "sukumo-reader.service (starts at boot; now: systemctl start sukumo-reader)"
    fi
    # A running daemon picks up a new program or unit; a stopped one is left stopped.
    if [ "$VENV_CHANGED" -eq 1 ] || [ "$changed" -eq 1 ]; then
        systemctl try-restart sukumo-reader.service
    fi
}

VENV_CHANGED=0
step_apt
step_user
before="$(cat "$PREFIX/.installed-from" 2>/dev/null || true)"
step_venv
[ "$before" = "$(cat "$PREFIX/.installed-from")" ] || VENV_CHANGED=1
step_files
step_directories
step_system_files
step_unit
echo "done. Next: sukumo-reader provision, then sukumo-reader doctor (docs/technician.md)."
