#!/usr/bin/env bash
# Installs the Debian packages a group needs, only those missing.
# Usage: .ci/deps.sh build|test|audio|run|browser ...
set -euo pipefail

build=(build-essential pkg-config libclang-dev nasm cmake libasound2-dev libopus-dev
       libwebrtc-audio-processing-dev libxcb1-dev libxcb-shm0-dev libxcb-randr0-dev)
# ffmpeg: tests/record.rs reads recordings back with ffprobe and ffmpeg.
# python3-venv: tests/interop's aiortc venv (tests/interop/setup.sh).
# janus: tests/sfu.rs (VideoRoom through the WebSocket transport).
test=(iproute2 util-linux nftables iptables xvfb imagemagick xdotool openssl coturn ffmpeg
      python3 python3-venv janus)
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

# playwright-core (tests/browser) is pinned to a release that runs on Debian 12's Node.js 18.
check_node() {
  [[ " ${want[*]} " == *" nodejs "* ]] || return 0
  local major
  major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  if [ "$major" -lt 18 ]; then
    echo "deps.sh: the browser tests need Node.js 18 or newer; 'node' is $(node --version 2>/dev/null || echo missing)" >&2
    exit 1
  fi
}
if [ ${#missing[@]} -eq 0 ]; then
  check_node
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null; then
  sudo=(sudo)
else
  cat >&2 <<MSG
deps.sh: these Debian packages are missing: ${missing[*]}
You are not root and sudo is not installed, so they cannot be installed from here.
Either run, as root (su -):
    apt-get update && apt-get install -y --no-install-recommends ${missing[*]}
or install sudo and add yourself to the sudo group (as root: apt-get install sudo &&
adduser $(id -un) sudo, then log in again), then run make again.
MSG
  exit 1
fi
echo "Installing missing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
# openh264's build picks up nasm only when it is present at build time.
if [[ " ${missing[*]} " == *" nasm "* ]] && command -v cargo >/dev/null; then
  cargo clean -p openh264-sys2 >/dev/null 2>&1 || true
fi
check_node
