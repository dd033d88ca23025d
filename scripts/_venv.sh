# Shared by scripts/run and scripts/test: (re)install the project into .venv when pyproject.toml changed.
ensure_venv() {
  local extras="$1" stamp=".venv/.installed-$1"
  if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
  fi
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    if [ "$extras" = "." ]; then .venv/bin/python -m pip install -q -e .; else .venv/bin/python -m pip install -q -e ".[$extras]"; fi
    touch "$stamp"
  fi
}
