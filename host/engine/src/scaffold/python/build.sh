# componentize-py from PATH, from deskhost's tool cache, or installed into .venv here.
py="$(command -v componentize-py || echo "${DESKHOST_TOOLS:-$HOME/.cache/deskhost/tools}/py/bin/componentize-py")"
if [ ! -x "$py" ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check componentize-py==__COMPONENTIZE_PY__
  py=.venv/bin/componentize-py
fi
"$py" -d wit -w policy componentize app -o __CRATE__.wasm >/dev/null
