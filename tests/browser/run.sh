#!/usr/bin/env bash
# CTest entry of the real-browser test (serve_page.mjs). Skips (exit 77), saying why, when
# Chromium, node, ffmpeg or the npm package are missing; `.ci/run` installs them
# (scripts/install-deps --browser, then npm ci in tests/browser).
# The fake camera plays the first 6 s of the shared clip ($FERC_DATA/video), or, without the
# shared data, the committed photo as a still video.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=tests/browser
for tool in /usr/bin/chromium node ffmpeg; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed (scripts/install-deps --browser)"; exit 77; }
done
[[ -d $here/node_modules/playwright-core ]] || { echo "SKIP: playwright-core is not installed (cd $here && npm ci)"; exit 77; }
: "${FERC_BIN:?FERC_BIN must name the ferc binary}"
out=${FERC_BROWSER_OUT:-$(dirname "$FERC_BIN")/browser-test}
mkdir -p "$out"
photo=tests/fixtures/faces/Tom_Cruise_avp_2014_4.jpg
clip=${FERC_DATA:-}/video/short_hamilton_clip.mp4
if [[ -n ${FERC_DATA:-} && -f $clip ]]; then
  ffmpeg -y -loglevel error -i "$clip" -t 6 -vf "scale=640:360,fps=15" -pix_fmt yuv420p "$out/camera.y4m"
else
  ffmpeg -y -loglevel error -loop 1 -i "$photo" -t 3 -vf "scale=360:510,fps=15,format=yuv420p" "$out/camera.y4m"
fi
FERC_Y4M="$out/camera.y4m" FERC_PHOTO=$photo FERC_OUT="$out" timeout 300 node $here/serve_page.mjs
echo "screenshots: $out/serve-page.png $out/serve-page-photo.png"
