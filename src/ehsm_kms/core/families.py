"""Routes a key spec to its algorithm module, so the operations need not know which family they serve."""

from __future__ import annotations

from typing import Any

from ehsm_kms import errors
from ehsm_kms.core import aes, ec, mac, rsa, sm2, sm4
from ehsm_kms.core.specs import Family, KeySpec, info


def generate(spec: KeySpec) -> bytes:
    """Fresh key material for a spec; asymmetric keys get a pairwise check before they are used."""
    fam = info(spec).family
    if fam is Family.AES:
        return aes.generate_key(spec)
    if fam is Family.SM4:
        return sm4.generate_key(spec)
    if fam is Family.HMAC:
        return mac.generate_key()
    if fam is Family.RSA:
        material = rsa.generate_key(spec)
        rsa.pairwise_check(rsa.load(spec, material))
        return material
    if fam is Family.EC:
        material = ec.generate_key(spec)
        ec.pairwise_check(ec.load(spec, material))
        return material
    if fam is Family.SM2:
        material = sm2.generate_key()
        sm2.pairwise_check(sm2.load(material))
        return material
    raise errors.CryptoError()  # pragma: no cover - exhaustive over Family


def load_asymmetric(spec: KeySpec, material: bytes) -> Any:
    fam = info(spec).family
    if fam is Family.RSA:
        return rsa.load(spec, material)
    if fam is Family.EC:
        return ec.load(spec, material)
    if fam is Family.SM2:
        return sm2.load(material)
    raise errors.CryptoError()


def encrypt(spec: KeySpec, key: bytes, plaintext: bytes, aad: bytes, key_version: int) -> bytes:
    fam = info(spec).family
    if fam is Family.AES:
        return aes.encrypt(spec, key, plaintext, aad, key_version)
    if fam is Family.SM4:
        return sm4.encrypt(spec, key, plaintext, aad, key_version)
    raise errors.CryptoError()


def decrypt(spec: KeySpec, key: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    fam = info(spec).family
    if fam is Family.AES:
        return aes.decrypt(spec, key, ciphertext, aad)
    if fam is Family.SM4:
        return sm4.decrypt(spec, key, ciphertext, aad)
    raise errors.DecryptionFailed()
