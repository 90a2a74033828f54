#!/usr/bin/env bash
# Screenshots for the docs, under Xvfb: the pre-join screen (prejoin.png) and a call with
# three headless peers in the grid layout (grid.png), in speaker view (speaker.png) and
# with a fourth sharing a screen (screen.png), and a test call with the server's echo
# (testcall.png). Synthetic camera and tone: the
# pictures show the test pattern, captioned as such.
# Usage: docs/screenshots/take.sh [path to the confab binary]
set -euo pipefail
BIN=${1:-${CARGO_TARGET_DIR:-target}/debug/confab}
OUT=$(cd "$(dirname "$0")" && pwd)
PORT=${PORT:-18787}
SERVER=ws://127.0.0.1:$PORT/ws
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
# Settings of our own: the user's stay untouched.
export XDG_CONFIG_HOME=$(mktemp -d)
# The look follows the desktop's; pictures for the docs are dark whatever this one says.
export GTK_THEME=Adwaita:dark

fifo=$(mktemp -u) && mkfifo "$fifo"
Xvfb -displayfd 3 -screen 0 1180x700x24 -nolisten tcp -noreset 3>"$fifo" 2>/dev/null &
pids+=($!)
read -r n <"$fifo" && rm -f "$fifo"
export DISPLAY=:$n
unset WAYLAND_DISPLAY

# A window closed by a signal leaves its member behind for the resume grace: none here,
# so the second start is the same person, not a second one.
"$BIN" serve --listen 127.0.0.1:$PORT --resume-grace-secs 0 --echo >/dev/null 2>&1 &
pids+=($!)
sleep 2

# Someone already in the room, so the pre-join screen says so.
"$BIN" headless --server "$SERVER" --room team --name Grace --seconds 80 --bind 127.0.0.1 \
  --report /dev/null >/dev/null 2>&1 &
pids+=($!)
"$BIN" --server "$SERVER" --room team --name "Ada Lovelace" --camera synthetic \
  --microphone synthetic >/dev/null 2>&1 &
app=$!
pids+=($app)
sleep 12
import -display "$DISPLAY" -window root "$OUT/prejoin.png"
kill "$app"

for who in Bob Carol; do
  "$BIN" headless --server "$SERVER" --room team --name "$who" --seconds 80 \
    --bind 127.0.0.1 --report /dev/null >/dev/null 2>&1 &
  pids+=($!)
done
join() {
  "$BIN" --server "$SERVER" --room team --name "Ada Lovelace" --camera synthetic \
    --microphone synthetic --join >/dev/null 2>&1 &
  app=$!
  pids+=($app)
  sleep 15
}
join
import -display "$DISPLAY" -window root "$OUT/grid.png"
kill "$app" && wait "$app" || true

# The layout is remembered in the settings file: the next start opens in speaker view.
cfg="$XDG_CONFIG_HOME/confab/settings.toml"
mkdir -p "$(dirname "$cfg")"
if grep -qs '^layout = ' "$cfg"; then
  sed -i 's/^layout = .*/layout = "speaker"/' "$cfg"
else
  printf '\n[window]\nlayout = "speaker"\n' >>"$cfg"
fi
join
import -display "$DISPLAY" -window root "$OUT/speaker.png"

# Someone shares a screen (the synthetic one): it takes the stage by itself.
"$BIN" headless --server "$SERVER" --room team --name Dan --seconds 30 --bind 127.0.0.1 \
  --share-screen synthetic --report /dev/null >/dev/null 2>&1 &
pids+=($!)
sleep 10
import -display "$DISPLAY" -window root "$OUT/screen.png"
kill "$app" && wait "$app" || true

# A test call: the server's echo sends Ada's own picture and sound back.
"$BIN" --server "$SERVER" --name "Ada Lovelace" --camera synthetic --microphone synthetic \
  --test-call >/dev/null 2>&1 &
app=$!
pids+=($app)
sleep 12
import -display "$DISPLAY" -window root "$OUT/testcall.png"
echo "wrote $OUT/prejoin.png, grid.png, speaker.png, screen.png and testcall.png"
