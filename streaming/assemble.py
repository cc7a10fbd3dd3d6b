"""One playlist entry → the bytes of a segment the endpoint can decode on its own.

The follower keeps each segment as one self-contained object, so nothing downstream (the
endpoint, the review tool, a training export) needs to know how the stream was packaged:
- an ``EXT-X-BYTERANGE`` segment is its slice of the file;
- an ``AES-128`` segment (``EXT-X-KEY``) is decrypted with the key its URI names (AES-128-CBC,
  PKCS#7 padding; the IV given, else the media sequence number, RFC 8216 §5.2);
- an fMP4/CMAF segment gets its ``EXT-X-MAP`` init section in front: init + media segment is a
  fragmented MP4 every demuxer reads (kept under the segment's name plus ``.mp4``).
``SAMPLE-AES`` (which encrypts inside the elementary stream) and DRM key formats (FairPlay,
Widevine, PlayReady) are refused with ``FetchError(reason="unsupported")``: a clear error,
counted, never a segment that fails to decode further on.
"""

from __future__ import annotations

from .playlist import Entry, Key, Section
from .sources import FetchError, Fetcher

CACHED = 16  # init sections and keys kept (one per rendition and key rotation in flight)


class SegmentAssembler:
    def __init__(self, fetcher: Fetcher):
        self.fetcher = fetcher
        self._cache: dict[tuple, bytes] = {}

    def assemble(self, entry: Entry) -> tuple[bytes, str]:
        """The segment's decodable bytes and the name to keep them under."""
        self._check(entry.key, entry.uri)
        data = self._decrypt(self.fetcher.read(entry.uri, entry.byterange), entry.key, entry.media_sequence)
        name = entry.listed_uri
        if entry.init is not None:
            data = self._init(entry.init) + data
            name += ".mp4"
        return data, name

    def _check(self, key: Key | None, uri: str) -> None:
        if key is None:
            return
        if key.method != "AES-128" or key.keyformat != "identity":
            what = key.method if key.keyformat == "identity" else f"{key.method} with KEYFORMAT {key.keyformat}"
            raise FetchError(uri, "unsupported", f"encrypted with {what}, which clipwatch does not "
                                                 "decrypt (AES-128 segments are supported; SAMPLE-AES "
                                                 "and DRM are not)")
        if not key.uri:
            raise FetchError(uri, "unsupported", "AES-128 key without a URI")

    def _init(self, init: Section) -> bytes:
        return self._cached(("init", init.uri, init.byterange), lambda: self.fetcher.read(init.uri, init.byterange))

    def _decrypt(self, data: bytes, key: Key | None, media_sequence: int) -> bytes:
        if key is None:
            return data
        from cryptography.hazmat.primitives import padding
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        secret = self._cached(("key", key.uri), lambda: self.fetcher.read(key.uri))
        if len(secret) != 16:
            raise FetchError(key.uri, "bad_key", f"an AES-128 key is 16 bytes, this one is {len(secret)}")
        iv = key.iv or media_sequence.to_bytes(16, "big")
        if len(data) % 16:
            raise FetchError(key.uri, "bad_key", f"{len(data)} encrypted bytes are not whole AES blocks")
        decryptor = Cipher(algorithms.AES(secret), modes.CBC(iv)).decryptor()
        padded = decryptor.update(data) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        try:
            return unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            raise FetchError(key.uri, "bad_key", "decryption failed (wrong key or IV)") from None

    def _cached(self, name: tuple, read) -> bytes:
        if name not in self._cache:
            if len(self._cache) >= CACHED:
                self._cache.pop(next(iter(self._cache)))
            self._cache[name] = read()
        return self._cache[name]
