# componentize-js from node_modules here, from deskhost's tool cache, or `npm install`ed.
cjs=node_modules/.bin/componentize-js
[ -x "$cjs" ] || cjs="${DESKHOST_TOOLS:-$HOME/.cache/deskhost/tools}/js/node_modules/.bin/componentize-js"
if [ ! -x "$cjs" ]; then
  npm install --no-audit --no-fund --loglevel=error
  cjs=node_modules/.bin/componentize-js
fi
# No WASI features: the component imports only the deskhost interfaces of wit/world.wit.
"$cjs" policy.js --wit wit --world-name policy \
  --disable stdio random clocks http fetch-event -o __CRATE__.wasm >/dev/null
