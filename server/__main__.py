"""`python -m nonecap_mcp` behaves exactly like the `nonecap-mcp` console script."""

from nonecap_mcp.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
