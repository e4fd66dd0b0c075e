"""What an archive member may be, and what an archive may expand to: the rules
every reader of an untrusted archive applies (CIFAR-10's, the ILSVRC tars and
devkit).

`member_problem` says why a member is not a plain file at a relative path inside
the archive (an absolute path, '..', a link, a device...). `bounded_members`
reads the headers one by one and stops at the first that breaks a bound (a small
.tar.gz can list millions of members or expand to gigabytes), before anything
is extracted or read, so the disk, memory and time an archive can take are
bounded by the caps its reader chose. (The ILSVRC image tars are read in
place, never extracted: `imagenet.index_archive` checks each member's offsets
against the file instead.)
"""
from __future__ import annotations

import tarfile


def member_problem(m: tarfile.TarInfo) -> str | None:
    """Why member `m` may not be read or extracted, as words that follow "is"; None
    for a regular file or folder at a relative path that stays inside the archive."""
    name = m.name.replace("\\", "/")
    parts = [q for q in name.split("/") if q not in ("", ".")]
    if name.startswith("/") or any(":" in q for q in parts):
        return "at an absolute path (or a drive or stream name)"
    if ".." in parts:
        return "at a path pointing outside the archive's folder"
    if m.issym() or m.islnk():
        return "a symlink" if m.issym() else "a hard link"
    if m.isdev():
        return "a device or fifo"
    if m.issparse():
        return "a sparse file"
    if not (m.isreg() or m.isdir()):
        return "not a regular file"
    return None


def bounded_members(tar: tarfile.TarFile, archive, max_members: int, max_member_bytes: int,
                    max_total_bytes: int, error=ValueError, what="this kind of archive"):
    """Yield the members of `tar`, raising `error` as soon as there are more than
    `max_members`, one is larger than `max_member_bytes`, or the regular files add
    up to more than `max_total_bytes`."""
    total = 0
    for count, m in enumerate(tar, 1):
        if count > max_members:
            raise error(f"{archive}: more than {max_members} members, more than {what} has; "
                        "refusing to extract. Delete the archive.")
        if m.size > max_member_bytes:
            raise error(f"{archive}: member {m.name!r} is {m.size} bytes, more than {what} "
                        f"holds ({max_member_bytes >> 20} MiB at most); refusing to extract. "
                        "Delete the archive.")
        total += m.size if m.isreg() else 0
        if total > max_total_bytes:
            raise error(f"{archive}: its members add up to more than {max_total_bytes >> 20} "
                        f"MiB, more than {what} holds; refusing to extract. Delete the archive.")
        yield m
