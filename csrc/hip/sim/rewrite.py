"""Build step of the simulated device (HIPGRAD_GPU=sim): copies csrc/hip/*.hip and *.h into the
build tree as host C++, with the two constructs a host compiler cannot take rewritten in place:

  kernel<T><<<grid, block, shmem, stream>>>(args)
      -> kernel<T> | ::hg::sim::Launch(grid, block, shmem, stream, SITE)(args)
  __shared__ [__align__(n)] T name[dims];      (per block, in the block's shared-memory arena)
      -> T (&name)[dims] = *static_cast<T (*)[dims]>(::hg::sim::shared_static(...));
  extern __shared__ T name[];                  (the launch's dynamic shared memory)
      -> T* name = static_cast<T*>(::hg::sim::shared_dynamic(alignof(T)));

Everything else (and the line numbering: a #line directive names the original file) is kept, so
compiler messages point at the real source. SITE is a static record of the launch site (file,
line, the kernel expression) used for error messages and the coverage check; every site is also
listed in <out>/launch_sites.txt.

Usage: rewrite.py <source> <output>          (one file)
       rewrite.py --sites <output> <sources...>  (the list of launch sites)
"""

from __future__ import annotations

import pathlib
import re
import sys

SHARED = re.compile(
    r"__shared__\s+(?:__align__\((\d+)\)\s+)?([A-Za-z_][\w:]*(?:\s*<[^;>]*>)?)\s+([A-Za-z_]\w*)\s*"
    r"((?:\[[^\];]+\])*)\s*;")
EXTERN_SHARED = re.compile(r"extern\s+__shared__\s+(?:__align__\((\d+)\)\s+)?([A-Za-z_][\w:]*)\s+"
                           r"([A-Za-z_]\w*)\s*\[\s*\]\s*;")
KERNEL_NAME = re.compile(r"([A-Za-z_][\w:]*\s*(?:<[^;{}()]*?>)?)\s*$")


def rewrite_shared(text: str) -> str:
    def ext(m: re.Match) -> str:
        align, typ, name = m.group(1), m.group(2), m.group(3)
        al = align or f"alignof({typ})"
        return f"{typ}* {name} = static_cast<{typ}*>(::hg::sim::shared_dynamic({al}));"

    def static(m: re.Match) -> str:
        align, typ, name, dims = m.group(1), m.group(2), m.group(3), m.group(4) or ""
        al = align or f"alignof({typ})"
        ref = f"{typ} (&{name}){dims}" if dims else f"{typ}& {name}"
        ptr = f"{typ} (*){dims}" if dims else f"{typ}*"
        return (f"static char hg_sim_slot_{name}; {ref} = *static_cast<{ptr}>("
                f"::hg::sim::shared_static(&hg_sim_slot_{name}, sizeof({typ}{dims}), {al}, \"{name}\"));")

    text = EXTERN_SHARED.sub(ext, text)
    return SHARED.sub(static, text)


def rewrite_launches(text: str, rel: str, sites: list[str]) -> str:
    out = []
    pos = 0
    while True:
        i = text.find("<<<", pos)
        if i < 0:
            out.append(text[pos:])
            break
        line_start = text.rfind("\n", 0, i) + 1
        if "//" in text[line_start:i]:  # inside a line comment
            out.append(text[pos:i + 3])
            pos = i + 3
            continue
        j = text.find(">>>", i)
        if j < 0:
            raise SystemExit(f"{rel}: '<<<' without '>>>'")
        line = text.count("\n", 0, i) + 1
        window_start = max(0, i - 300)
        m = KERNEL_NAME.search(text[window_start:i])
        if not m:
            raise SystemExit(f"{rel}:{line}: cannot find the kernel name before '<<<'")
        kstart = window_start + m.start(1)
        kernel = text[kstart:window_start + m.end(1)]
        name = re.sub(r"\s+", " ", kernel).strip().replace('"', "'")
        sites.append(f"{rel}:{line} {name}")
        cfg = text[i + 3:j]
        site = (f"[]() -> const ::hg::sim::Site& {{ static const ::hg::sim::Site s{{\"{rel}\", {line}, "
                f"\"{name}\"}}; return s; }}()")
        # The kernel is called through a generic lambda so that its template arguments not given
        # explicitly are deduced from the launch's arguments, as <<<...>>> does.
        out.append(text[pos:kstart])
        out.append(f"::hg::sim::Launch({cfg}, {site}).kernel([&](auto&... hg_sim_a) {{ {kernel}(hg_sim_a...); }})")
        out.append("\n" * text[kstart:i].count("\n"))
        pos = j + 3
    return "".join(out)


def main() -> None:
    if sys.argv[1] == "--sites":
        sites: list[str] = []
        for name in sys.argv[3:]:
            f = pathlib.Path(name)
            rewrite_launches(f.read_text(), f"csrc/hip/{f.name}", sites)
        write_if_changed(pathlib.Path(sys.argv[2]), "\n".join(sites) + "\n")
        return
    f, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    text = f.read_text()
    parts = f.resolve().parts
    rel = "/".join(parts[len(parts) - 1 - parts[::-1].index("csrc"):]) if "csrc" in parts else f.name
    new = rewrite_launches(rewrite_shared(text), rel, [])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f'#line 1 "{f.resolve()}"\n' + new)


def write_if_changed(path: pathlib.Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


if __name__ == "__main__":
    main()
