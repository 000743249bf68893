"""fnac weights: list the known pretrained weight files, or download one (verified)."""

from __future__ import annotations

import argparse

NAME = "weights"
HELP = "pretrained weights: `list` what is known and present, `fetch NAME` downloads one (checksum-verified)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="known files, where they go, and whether they are present and verified")
    ls.add_argument("--dir", help="folder to look in (default: the PyTorch hub cache, torch.hub.get_dir()/checkpoints)")
    fe = sub.add_parser("fetch", help="download a known file into the PyTorch hub cache, resumable, checksum-verified")
    fe.add_argument("name", help="which file (see `fnac weights list`), e.g. resnet18-imagenet")
    fe.add_argument(
        "--url",
        help="download from this address instead of the official one (also: $FNAC_WEIGHTS_URL); "
        "the known checksum is still required",
    )
    fe.add_argument("--dir", help="destination folder (default: the PyTorch hub cache, where training looks)")
    fe.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from fnac import weights as W

    if args.action == "list":
        for name in sorted(W.KNOWN):
            st = W.status(name, args.dir)
            print(f"{name}: {st.entry.about}")
            print(f"  file    {st.path}")
            print(f"  source  {st.entry.url}")
            print(f"  sha256  {st.entry.sha256} ({st.entry.size} bytes)")
            detail = st.detail + (f" --dir {args.dir}" if args.dir and st.state == "missing" else "")
            print(f"  status  {st.state}" + (f" ({detail})" if detail else ""))
        return 0
    path = W.fetch(args.name, url=args.url, dest_dir=args.dir, progress=not args.quiet)
    print(f"{path}: verified (sha256 {W.get(args.name).sha256})")
    return 0
