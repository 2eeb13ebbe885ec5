#!/usr/bin/env bash
# Build dist/nonecap-mcp.mcpb, the MCP bundle a desktop host installs with one double-click.
#
# The bundle is of the `uv` server type: it carries this project's source, pyproject.toml and
# a uv.lock made here, and the host runs `uv run --directory <bundle> --frozen nonecap-mcp serve`,
# so uv installs exactly the locked dependencies on the user's platform. (A `python` bundle
# would have to vendor pydantic-core and other compiled wheels for one platform only.)
#
# Needs: npm (installs the pinned @anthropic-ai/mcpb from bundle/package-lock.json) and uv
# (`pip install uv`), both reaching their registries. Usage: bundle/build.sh [OUT.mcpb]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$(realpath -m "${1:-$root/dist/nonecap-mcp.mcpb}")"
cd "$root"

for tool in npm uv; do
  command -v "$tool" >/dev/null || { echo "bundle/build.sh needs $tool on PATH (uv: pip install uv)" >&2; exit 1; }
done

# The pinned mcpb CLI; npm ci again only when the lock file changed since the last install.
if [ ! bundle/node_modules/.package-lock.json -nt bundle/package-lock.json ]; then
  npm ci --prefix bundle --no-audit --no-fund --loglevel=error >&2
fi
mcpb="$root/bundle/node_modules/.bin/mcpb"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
src="$stage/nonecap-mcp"
mkdir -p "$src"
cp bundle/manifest.json bundle/icon.png pyproject.toml README.md LICENSE "$src/"
cp -r server tools "$src/"
find "$src" -name __pycache__ -prune -exec rm -rf {} +
printf '.venv/\n__pycache__/\n*.pyc\n*.egg-info/\nbuild/\n' > "$src/.mcpbignore"

# Lock for every platform and Python the bundle may meet, so hosts install what was tested.
UV_PYTHON_DOWNLOADS=never uv lock --directory "$src" --quiet

"$mcpb" validate "$src/manifest.json" >&2
mkdir -p "$(dirname "$out")"
"$mcpb" pack "$src" "$out" >&2
echo "$out"
