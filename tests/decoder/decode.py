#!/usr/bin/env python3
"""An independent reader of dstore storage format 2, written only from docs/format.md.

Usage: DSTORE_PASSPHRASE=... python3 decode.py <dir> <output> [file id]

<dir> holds what the repository's channels hold, one file per attachment under its attachment
name: dstore-config.json, dstore-key-<id>.json (encrypted repositories), packs and catalogue
entries (<48 hex>.bin). The newest entry version of the file (the only file, or [file id]) is
decoded and its bytes written to <output>. Every check the document gives a reader is made; any
failure exits with status 1 and one sentence on stderr, and writes nothing.
"""
import glob
import hashlib
import hmac
import json
import os
import sys

try:
    import blake3
    import zstandard
    from argon2.low_level import Type, hash_secret_raw
    from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_decrypt as _xopen
    from nacl.exceptions import CryptoError
except ImportError as e:  # pragma: no cover
    sys.exit(f"decode.py: missing Python package ({e}); run "
             "`python3 -m pip install -r tests/decoder/requirements.txt`")


class Bad(Exception):
    pass


def need(cond, msg):
    if not cond:
        raise Bad(msg)


def unhex(s, n, what):
    need(isinstance(s, str) and len(s) == 2 * n and s == s.lower(), f"{what} is not {n} bytes of lowercase hex")
    try:
        return bytes.fromhex(s)
    except ValueError:
        raise Bad(f"{what} is not hex")


def u32(b, i):
    return int.from_bytes(b[i:i + 4], "little")


def u64(b, i):
    return int.from_bytes(b[i:i + 8], "little")


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


# Section 1: Seal / Open.
def xopen(key, box, ad, what):
    need(len(box) >= 40, f"{what} is shorter than a sealed box")
    try:
        return _xopen(box[24:], ad, box[:24], key)
    except CryptoError:
        raise Bad(f"{what} fails to open (wrong key, or altered)")


# Section 1: HKDF-SHA256, 32-byte output, as written in section 3.
def hkdf(ikm, salt, info):
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def H(key, m):
    return blake3.blake3(m, key=key).digest()


class Repo:
    def __init__(self, d, passphrase):
        with open(os.path.join(d, "dstore-config.json"), "rb") as f:
            cfg = json.loads(f.read().decode("utf-8"))
        need(is_int(cfg.get("format")), "the config has no format")
        need(cfg["format"] <= 2, "the config was written by a newer dstore; upgrade dstore")
        need(cfg["format"] == 2, "the config is not format 2")
        self.repo_id = unhex(cfg.get("repo_id"), 16, "the config's repo_id")
        enc = cfg.get("encryption")
        need(isinstance(enc, bool), "the config's encryption is not a boolean")
        ch = cfg.get("chunker") or {}
        mn, av, mx = ch.get("min"), ch.get("avg"), ch.get("max")
        need(all(is_int(v) for v in (mn, av, mx)) and 64 <= mn <= 1048576 and 256 <= av <= 4194304
             and 1024 <= mx <= 16777216 and mn <= av <= mx, "the config's chunker bounds are out of range")
        self.encrypted = enc
        keyfiles = sorted(glob.glob(os.path.join(d, "dstore-key-*.json")))
        if not enc:
            need(not keyfiles, "the config says encryption: false but key files exist; refused")
            need(is_int(cfg.get("chunker_seed")), "an unencrypted config has no chunker_seed")
            self.name_key = bytes(32)
            return
        need(passphrase, "no passphrase: set DSTORE_PASSPHRASE")
        master = None
        tried = 0
        for path in keyfiles:
            with open(path, "rb") as f:
                k = json.loads(f.read().decode("utf-8"))
            if is_int(k.get("format")) and k["format"] > 2:
                print(f"decode.py: {os.path.basename(path)} is written by a newer dstore; skipped", file=sys.stderr)
                continue
            tried += 1
            need(k.get("format") == 2 and k.get("kdf") == "argon2id", f"{os.path.basename(path)} is not an argon2id key file")
            m, t, p = k.get("m_cost_kib"), k.get("t_cost"), k.get("p_cost")
            need(all(is_int(v) for v in (m, t, p)) and 1 <= p <= 16 and 8 * p <= m <= 4194304 and 1 <= t <= 64,
                 f"{os.path.basename(path)} has Argon2 parameters out of range")
            salt = unhex(k.get("salt"), 16, "a key file's salt")
            sealed = unhex(k.get("sealed"), 72, "a key file's sealed")
            kek = hash_secret_raw(passphrase.encode("utf-8"), salt, t, m, p, 32, Type.ID, 19)
            try:
                master = xopen(kek, sealed, b"dstore key v2" + self.repo_id, "key file")
                break
            except Bad:
                continue
        need(master is not None, f"the passphrase opens none of the {tried} key files of this repository")
        need(len(master) == 32, "the master key is not 32 bytes")
        self.id_key = hkdf(master, self.repo_id, b"dstore v2 chunk-id")
        self.data_key = hkdf(master, self.repo_id, b"dstore v2 data")
        self.cat_key = hkdf(master, self.repo_id, b"dstore v2 catalogue")
        self.name_key = hkdf(master, self.repo_id, b"dstore v2 names")

    # Section 6.
    def kind(self, name):
        if len(name) != 52 or not name.endswith(".bin") or name[:48] != name[:48].lower():
            return None
        try:
            r, t = bytes.fromhex(name[:32]), bytes.fromhex(name[32:48])
        except ValueError:
            return None
        for k in ("pack", "entry", "piece"):
            if H(self.name_key, b"tag\0" + k.encode() + b"\0" + r)[:8] == t:
                return k
        return None

    def name(self, kind, fid, index):
        r = H(self.name_key, kind.encode() + b"\0" + fid.encode() + b"\0" + index.to_bytes(8, "little"))[:16]
        return r.hex() + H(self.name_key, b"tag\0" + kind.encode() + b"\0" + r)[:8].hex() + ".bin"

    def chunk_id(self, plain):
        return H(self.id_key, plain) if self.encrypted else hashlib.sha256(plain).digest()

    def pack_id(self, pack):
        start = 0
        if len(pack) >= 4:
            start = max(len(pack) - 4 - int.from_bytes(pack[-4:], "little"), 0)
        m = b"pack" + len(pack).to_bytes(8, "little") + pack[start:]
        return (H(self.id_key, m) if self.encrypted else hashlib.sha256(m).digest())[:16]

    def open_entry(self, data):
        j = xopen(self.cat_key, data, b"dstore v2 entry" + self.repo_id, "a catalogue entry") if self.encrypted else data
        try:
            return json.loads(j.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise Bad("a catalogue entry is not JSON")

    # Section 5: a pack's header, with every check a reader makes.
    def pack_header(self, pack):
        overhead = 40 if self.encrypted else 0
        need(len(pack) >= 4, "a pack is shorter than its trailer")
        hl = u32(pack, len(pack) - 4)
        need(overhead <= hl <= len(pack) - 4, "a pack's header_len is out of range (truncated pack)")
        sealed = pack[len(pack) - 4 - hl:len(pack) - 4]
        h = xopen(self.data_key, sealed, b"dstore v2 pack header" + self.repo_id, "a pack header") if self.encrypted else sealed
        need(len(h) >= 5, "a pack header is too short")
        need(h[0] == 2, "pack written by a newer dstore")
        count = u32(h, 1)
        need(len(h) == 5 + 49 * count, "a pack header's length does not match its count")
        blobs_end = len(pack) - 4 - hl
        entries = {}
        for i in range(count):
            e = h[5 + 49 * i:5 + 49 * (i + 1)]
            cid, off, slen, plen, flags = e[:32], u64(e, 32), u32(e, 40), u32(e, 44), e[48]
            need(off + slen <= blobs_end, "a pack header names bytes outside the pack's blobs")
            entries[(cid, off)] = (slen, plen, flags)
        return entries

    # Section 4: opening a blob, steps 1 to 4 in order.
    def open_blob(self, blob, cid, flags, slen, plen):
        need(len(blob) == slen, "a blob has the wrong length (truncated pack or bad range)")
        need(flags & 0xFE == 0, "a chunk has reserved flags set: written by a newer dstore")
        if self.encrypted:
            body = xopen(self.data_key, blob, b"dstore v2 chunk" + self.repo_id + cid + bytes([flags]), "a chunk")
        else:
            body = blob
        if flags & 1:
            # At most plain_len + 1 bytes come out, whatever the frame header claims.
            plain = _bounded_decompress(body, plen)
            need(len(plain) == plen, "a compressed chunk does not decompress to its plain_len")
        else:
            plain = body
            need(len(plain) == plen, "a raw chunk's length is not its plain_len")
        need(hmac.compare_digest(self.chunk_id(plain), cid), "a chunk's content does not match its chunk ID")
        return plain


def _bounded_decompress(body, plen):
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(body)
        return reader.read(plen + 1)
    except zstandard.ZstdError:
        raise Bad("a compressed chunk is not a valid zstd frame")


def main(argv):
    if len(argv) not in (3, 4):
        raise Bad("usage: decode.py <dir> <output> [file id]")
    d, out_path = argv[1], argv[2]
    repo = Repo(d, os.environ.get("DSTORE_PASSPHRASE", ""))
    packs, entries, pieces = {}, {}, {}
    for path in sorted(glob.glob(os.path.join(d, "*.bin"))):
        name = os.path.basename(path)
        k = repo.kind(name)
        if k is None:
            print(f"decode.py: {name} is not a dstore object; skipped", file=sys.stderr)
            continue
        with open(path, "rb") as f:
            data = f.read()
        if k == "pack":
            packs[repo.pack_id(data).hex()] = data
        elif k == "piece":
            pieces[name] = data
        elif k == "entry":
            e = repo.open_entry(data)
            need(is_int(e.get("format")), "an entry has no format")
            need(e["format"] <= 2, "an entry was written by a newer dstore")
            need(e["format"] == 2 and e.get("kind") == "entry", "an entry is not a format-2 entry")
            fid, ver = e.get("id"), e.get("version")
            need(isinstance(fid, str) and is_int(ver) and ver >= 1, "an entry has no id or version")
            need(repo.name("entry", fid, ver) == name, "an entry's name is not the name of its id and version")
            if fid not in entries or entries[fid]["version"] < ver:
                entries[fid] = e
    if len(argv) == 4:
        need(argv[3] in entries, f"no entry for file {argv[3]}")
        e = entries[argv[3]]
    else:
        need(len(entries) == 1, f"expected one file's entry, found {len(entries)}")
        e = next(iter(entries.values()))
    size, sha = e.get("size"), unhex(e.get("sha256"), 32, "the entry's sha256")
    need(is_int(size) and size >= 0, "the entry's size is not a number")
    plist, chunks = e.get("packs"), e.get("chunks")
    need(isinstance(plist, list) and isinstance(chunks, list), "the entry has no packs or chunks")
    # Section 7.3: a head lists its pieces in order; in a dump of attachments each piece is found
    # by the name its file ID, version and position give (section 6), and must be the one listed.
    plist, chunks = list(plist), list(chunks)
    for n, ref in enumerate(e.get("pieces") or [], start=1):
        name = repo.name("piece", e["id"], e["version"] * 2**32 + n)
        need(name in pieces, f"piece {n} of the entry is missing")
        data = pieces[name]
        need(isinstance(ref, dict) and hashlib.sha256(data).hexdigest() == ref.get("sha256"),
             f"piece {n} is not the one its head lists")
        pc = repo.open_entry(data)
        need(pc.get("format") == 2 and pc.get("kind") == "piece" and pc.get("id") == e["id"]
             and pc.get("version") == e["version"] and pc.get("piece") == n,
             f"piece {n} does not belong to its head")
        ppacks, pchunks = pc.get("packs"), pc.get("chunks")
        need(isinstance(ppacks, list) and isinstance(pchunks, list) and len(pchunks) == ref.get("chunks"),
             f"piece {n} does not hold the chunks its head lists")
        base = len(plist)
        plist += ppacks
        for c in pchunks:
            need(isinstance(c, list) and len(c) == 6 and is_int(c[1]), "a chunk record is malformed")
            chunks.append([c[0], c[1] + base] + c[2:])
    headers = []
    for pk in plist:
        pid = unhex(pk.get("pack_id"), 16, "a pack_id").hex()
        need(pid in packs, f"pack {pid} is missing or its bytes do not match its pack ID")
        need(pk.get("size") == len(packs[pid]), f"pack {pid} does not have the size the entry records")
        for f in ("channel_id", "message_id", "attachment_id"):
            need(isinstance(pk.get(f), str) and pk[f].isdigit(), f"a pack's {f} is not a decimal string")
        headers.append((packs[pid], repo.pack_header(packs[pid])))
    need(sum(c[4] for c in chunks if isinstance(c, list) and len(c) == 6 and is_int(c[4])) == size,
         "the chunks' plain_len do not sum to the file's size")
    out = bytearray()
    h = hashlib.sha256()
    for c in chunks:
        need(isinstance(c, list) and len(c) == 6 and all(is_int(v) for v in c[1:]), "a chunk record is malformed")
        cid = unhex(c[0], 32, "a chunk ID")
        p, off, slen, plen, flags = c[1:]
        need(0 <= p < len(headers), "a chunk names a pack index out of range")
        pack, hdr = headers[p]
        need(0 <= off and off + slen <= len(pack), "a chunk's range lies outside its pack")
        need(hdr.get((cid, off)) == (slen, plen, flags), "a chunk record differs from its pack header's entry")
        plain = repo.open_blob(pack[off:off + slen], cid, flags, slen, plen)
        h.update(plain)
        out += plain
    need(len(out) == size, "the file's length is not the entry's size")
    need(hmac.compare_digest(h.digest(), sha), "the file's SHA-256 does not match the entry")
    tmp = out_path + ".part"
    with open(tmp, "wb") as f:
        f.write(out)
    os.replace(tmp, out_path)
    print(f"decoded {e['id']} version {e['version']}: {len(out)} bytes in {len(chunks)} chunks from {len(plist)} packs")


if __name__ == "__main__":
    try:
        main(sys.argv)
    except (Bad, OSError, ValueError, KeyError, TypeError, AttributeError) as ex:
        print(f"decode.py: {ex}", file=sys.stderr)
        sys.exit(1)
