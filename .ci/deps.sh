#!/usr/bin/env bash
# Installs the Debian packages a group needs, only those missing.
# Usage: .ci/deps.sh build|test|audio|run|browser ...
set -euo pipefail

build=(build-essential pkg-config libclang-dev nasm cmake libasound2-dev libopus-dev
       libwebrtc-audio-processing-dev libxcb1-dev libxcb-shm0-dev libxcb-randr0-dev)
test=(iproute2 util-linux xvfb imagemagick xdotool openssl)
# tests/devices.rs, tests/desktop.rs: a virtual sound card (PulseAudio null sink, FIFO
# microphone, parec/pactl, ALSA's pulse plugin) and screen.
audio=(pulseaudio pulseaudio-utils libasound2-plugins xvfb x11-xserver-utils)
# What an eframe window needs at run time (X11, software GL under Xvfb).
run=(libx11-xcb1 libxcursor1 libxrandr2 libxi6 libxkbcommon-x11-0 libegl1 libgl1 libgl1-mesa-dri)
# Browser-guest tests drive Debian's Chromium with playwright-core (npm).
browser=(chromium nodejs)

want=()
for group in "$@"; do
  case "$group" in
    build) want+=("${build[@]}") ;;
    test) want+=("${test[@]}") ;;
    audio) want+=("${audio[@]}") ;;
    run) want+=("${run[@]}") ;;
    browser) want+=("${browser[@]}") ;;
    *) echo "deps.sh: unknown group $group" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Debian's nodejs comes without npm; NodeSource's nodejs bundles it (and conflicts with npm).
if [[ " ${want[*]} " == *" nodejs "* ]] && ! command -v npm >/dev/null; then
  missing+=(npm)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

echo "Installing missing Debian packages: ${missing[*]}"
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
# openh264's build picks up nasm only when it is present at build time.
if [[ " ${missing[*]} " == *" nasm "* ]] && command -v cargo >/dev/null; then
  cargo clean -p openh264-sys2 >/dev/null 2>&1 || true
fi
