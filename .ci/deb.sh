#!/usr/bin/env bash
# Builds confab's Debian package from a built binary: the binary, the .desktop entry, the
# icon, a manual page, copyright and changelog. Depends: what dpkg-shlibdeps reads from the
# binary's ELF header, plus the X11/GL libraries winit and glow open at run time (dlopen,
# so invisible to dpkg-shlibdeps; the same list as `.ci/deps.sh run`).
# Usage: .ci/deb.sh BINARY OUTDIR   (prints the package's path)
set -euo pipefail

bin=$1
out=$2
here=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/Cargo.toml" | head -1)
arch=$(dpkg --print-architecture)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root

install -D -m 0755 "$bin" "$root/usr/bin/confab"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/confab"
install -D -m 0644 "$here/assets/confab.desktop" "$root/usr/share/applications/confab.desktop"
install -D -m 0644 "$here/assets/confab.png" "$root/usr/share/icons/hicolor/256x256/apps/confab.png"
install -D -m 0644 "$here/assets/confab.svg" "$root/usr/share/icons/hicolor/scalable/apps/confab.svg"
install -D -m 0644 "$here/assets/confab.1" "$root/usr/share/man/man1/confab.1"
gzip -9n "$root/usr/share/man/man1/confab.1"
# nokhwa decodes cameras' MJPEG with mozjpeg, compiled in; Debian's libjpeg is not used.
install -d "$root/usr/share/lintian/overrides"
printf '# mozjpeg, built into nokhwa for MJPEG cameras\nconfab: embedded-library libjpeg [usr/bin/confab]\n' \
  > "$root/usr/share/lintian/overrides/confab"
doc=$root/usr/share/doc/confab
install -d "$doc"
cat > "$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: confab

Files: *
Copyright: 2026 the confab developers
License: MIT or Apache-2.0
 On Debian systems the Apache License 2.0 is in /usr/share/common-licenses/Apache-2.0.
 The MIT license: permission is hereby granted, free of charge, to any person
 obtaining a copy of this software, to deal in it without restriction, provided the
 copyright notice and this permission notice are included in all copies; the software
 is provided "as is", without warranty of any kind.
COPYRIGHT
printf 'confab (%s) unstable; urgency=medium\n\n  * Built from the confab source tree.\n\n -- confab developers <confab-dev@example.org>  %s\n' \
  "$version" "$(date -R -d @"${SOURCE_DATE_EPOCH:-$(date +%s)}")" | gzip -9n > "$doc/changelog.gz"

# dpkg-shlibdeps wants to run in a source tree: give it the least it accepts.
mkdir -p "$work/src/debian"
printf 'Source: confab\n\nPackage: confab\nArchitecture: any\n' > "$work/src/debian/control"
shlibs=$(cd "$work/src" && dpkg-shlibdeps -O "$root/usr/bin/confab" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
runtime="libx11-xcb1, libxcursor1, libxrandr2, libxi6, libxkbcommon-x11-0, libegl1, libgl1, libgl1-mesa-dri"

install -d "$root/DEBIAN"
cat > "$root/DEBIAN/control" <<CONTROL
Package: confab
Version: $version
Architecture: $arch
Maintainer: confab developers <confab-dev@example.org>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $shlibs, $runtime
Recommends: pulseaudio | pipewire-pulse, libasound2-plugins
Section: net
Priority: optional
Description: video calls with no account and no cloud
 confab is a desktop video-call application: camera, microphone and screen
 share over WebRTC (H.264 and Opus), rooms, direct calls that ring, chat and
 live call statistics. Its signaling server is built in, so two people on one
 network need nothing else; \`confab serve\` runs it for a wider group, with
 STUN and TURN for calls across routers and firewalls.
CONTROL

(cd "$root" && find usr -type f -print0 | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"

mkdir -p "$out"
deb=$out/confab_${version}_${arch}.deb
dpkg-deb --root-owner-group -Z"${DEB_COMPRESS:-xz}" --build "$root" "$deb" >/dev/null
echo "$deb"
