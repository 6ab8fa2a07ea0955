"""Cryptographic commands: encrypt, decrypt, asym-encrypt, asym-decrypt, sign, verify, datakey, random, mac.

Input comes from ``--in FILE`` or standard input (``--text`` for a literal); binary results are printed as base64
(one line) unless ``--binary`` asks for raw bytes. Decrypted plaintexts are always written raw.
"""

from __future__ import annotations

import click

from ehsm_kms.cli.options import (
    DIGEST,
    MESSAGE_TYPE,
    PADDING,
    Options,
    b64,
    kms_command,
    read_b64,
    read_input,
    write_output,
)
from ehsm_kms.client.errors import VerificationFailed

KEYID = click.option("--keyid", required=True, help="The key's id.")
IN = click.option(
    "--in", "in_path", type=click.Path(dir_okay=False, allow_dash=True), help="Input file (default: standard input)."
)
OUT = click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Output file (default: standard output).",
)
TEXT = click.option("--text", help="Use this text (UTF-8) as the input instead of --in.")
AAD = click.option("--aad", help="Associated data (UTF-8 text) bound to the ciphertext.")
BINARY_OUT = click.option("--binary", is_flag=True, help="Write raw bytes instead of base64.")
BINARY_IN = click.option("--binary", is_flag=True, help="The input is raw bytes, not base64.")


def _aad(aad: str | None) -> bytes | None:
    return aad.encode("utf-8") if aad else None


def _encoded(opts: Options, field: str, data: bytes, binary: bool, out_path: str | None) -> None:
    if opts.as_json:
        opts.emit({field: b64(data)})
    elif binary:
        write_output(data, out_path)
    else:
        write_output((b64(data) + "\n").encode("ascii"), out_path)


def _ciphertext_input(in_path: str | None, binary: bool) -> bytes:
    data = read_input(in_path)
    return data if binary else read_b64(data.decode("ascii", "replace"), "the ciphertext")


def _plaintext(opts: Options, data: bytes, out_path: str | None) -> None:
    if opts.as_json:
        opts.emit({"plaintext": b64(data)})
    else:
        write_output(data, out_path)


@click.command()
@KEYID
@AAD
@TEXT
@IN
@OUT
@BINARY_OUT
@kms_command
def encrypt(
    opts: Options,
    keyid: str,
    aad: str | None,
    text: str | None,
    in_path: str | None,
    out_path: str | None,
    binary: bool,
) -> None:
    """Encrypt up to 6 KiB with a symmetric key (larger data: encrypt-file)."""
    plaintext = read_input(in_path, text)
    with opts.client() as client:
        ciphertext = client.encrypt(keyid, plaintext, aad=_aad(aad))
    _encoded(opts, "ciphertext", ciphertext, binary, out_path)


@click.command()
@KEYID
@AAD
@IN
@OUT
@BINARY_IN
@kms_command
def decrypt(
    opts: Options, keyid: str, aad: str | None, in_path: str | None, out_path: str | None, binary: bool
) -> None:
    """Decrypt a ciphertext of 'encrypt' (base64, or raw with --binary); writes the plaintext raw."""
    ciphertext = _ciphertext_input(in_path, binary)
    with opts.client() as client:
        plaintext = client.decrypt(keyid, ciphertext, aad=_aad(aad))
    _plaintext(opts, plaintext, out_path)


@click.command("asym-encrypt")
@KEYID
@click.option("--padding-mode", type=PADDING, default="EH_RSA_PKCS1_OAEP", show_default=True)
@TEXT
@IN
@OUT
@BINARY_OUT
@kms_command
def asym_encrypt(
    opts: Options,
    keyid: str,
    padding_mode: str,
    text: str | None,
    in_path: str | None,
    out_path: str | None,
    binary: bool,
) -> None:
    """Encrypt with an RSA or SM2 key."""
    plaintext = read_input(in_path, text)
    with opts.client() as client:
        ciphertext = client.asymmetric_encrypt(keyid, plaintext, padding_mode=padding_mode)
    _encoded(opts, "ciphertext", ciphertext, binary, out_path)


@click.command("asym-decrypt")
@KEYID
@click.option("--padding-mode", type=PADDING, default="EH_RSA_PKCS1_OAEP", show_default=True)
@IN
@OUT
@BINARY_IN
@kms_command
def asym_decrypt(
    opts: Options, keyid: str, padding_mode: str, in_path: str | None, out_path: str | None, binary: bool
) -> None:
    """Decrypt with an RSA or SM2 key; writes the plaintext raw."""
    ciphertext = _ciphertext_input(in_path, binary)
    with opts.client() as client:
        plaintext = client.asymmetric_decrypt(keyid, ciphertext, padding_mode=padding_mode)
    _plaintext(opts, plaintext, out_path)


DIGEST_OPT = click.option("--digest-mode", type=DIGEST, default="EH_SHA_256", show_default=True)
PADDING_OPT = click.option(
    "--padding-mode", type=PADDING, default="EH_RSA_PKCS1_PSS", show_default=True, help="RSA only."
)
MESSAGE_TYPE_OPT = click.option(
    "--message-type", type=MESSAGE_TYPE, default="EH_RAW", show_default=True, help="EH_DIGEST: the input is a digest."
)


@click.command()
@KEYID
@DIGEST_OPT
@PADDING_OPT
@MESSAGE_TYPE_OPT
@TEXT
@IN
@OUT
@BINARY_OUT
@kms_command
def sign(
    opts: Options,
    keyid: str,
    digest_mode: str,
    padding_mode: str,
    message_type: str,
    text: str | None,
    in_path: str | None,
    out_path: str | None,
    binary: bool,
) -> None:
    """Sign a message with an RSA, EC or SM2 key; prints the signature."""
    message = read_input(in_path, text)
    with opts.client() as client:
        signature = client.sign(
            keyid, message, digest_mode=digest_mode, padding_mode=padding_mode, message_type=message_type
        )
    _encoded(opts, "signature", signature, binary, out_path)


@click.command()
@KEYID
@click.option("--signature", "signature_b64", help="The signature, base64.")
@click.option(
    "--signature-file", type=click.Path(dir_okay=False, exists=True), help="File holding the signature (raw bytes)."
)
@DIGEST_OPT
@PADDING_OPT
@MESSAGE_TYPE_OPT
@TEXT
@IN
@kms_command
def verify(
    opts: Options,
    keyid: str,
    signature_b64: str | None,
    signature_file: str | None,
    digest_mode: str,
    padding_mode: str,
    message_type: str,
    text: str | None,
    in_path: str | None,
) -> None:
    """Verify a signature; exits with status 6 if it does not match."""
    if (signature_b64 is None) == (signature_file is None):
        raise click.UsageError("give either --signature or --signature-file")
    signature = read_b64(signature_b64, "--signature") if signature_b64 else read_input(signature_file)
    message = read_input(in_path, text)
    with opts.client() as client:
        valid = client.verify(
            keyid, message, signature, digest_mode=digest_mode, padding_mode=padding_mode, message_type=message_type
        )
    opts.emit({"result": valid}, "valid" if valid else None)
    if not valid:
        raise VerificationFailed()


# ---------------------------------------------------------------- data keys
@click.group()
def datakey() -> None:
    """Data keys: generate one under a key, or export one to an RSA or SM2 key."""


@datakey.command("generate")
@KEYID
@click.option("--keylen", type=click.IntRange(1, 1024), default=32, show_default=True, help="Bytes.")
@AAD
@click.option("--no-plaintext", is_flag=True, help="Only the encrypted data key (GenerateDataKeyWithoutPlaintext).")
@kms_command
def datakey_generate(opts: Options, keyid: str, keylen: int, aad: str | None, no_plaintext: bool) -> None:
    """A fresh data key: its plaintext and its ciphertext under the key, base64."""
    with opts.client() as client:
        if no_plaintext:
            ciphertext = client.generate_data_key_without_plaintext(keyid, keylen, aad=_aad(aad))
            opts.emit({"ciphertext": b64(ciphertext)}, b64(ciphertext))
            return
        made = client.generate_data_key(keyid, keylen, aad=_aad(aad))
    opts.emit(
        {"plaintext": b64(made.plaintext), "ciphertext": b64(made.ciphertext)},
        f"plaintext: {b64(made.plaintext)}\nciphertext: {b64(made.ciphertext)}",
    )


@datakey.command("export")
@KEYID
@click.option("--ukeyid", required=True, help="The RSA or SM2 key to re-encrypt the data key to.")
@click.option("--ciphertext", "ciphertext_b64", required=True, help="The data key's ciphertext under --keyid, base64.")
@AAD
@kms_command
def datakey_export(opts: Options, keyid: str, ukeyid: str, ciphertext_b64: str, aad: str | None) -> None:
    """Re-encrypt a data key from --keyid to the public key --ukeyid; prints the new ciphertext."""
    ciphertext = read_b64(ciphertext_b64, "--ciphertext")
    with opts.client() as client:
        exported = client.export_data_key(keyid, ukeyid, ciphertext, aad=_aad(aad))
    opts.emit({"newdatakey": b64(exported)}, b64(exported))


# ---------------------------------------------------------------- random and MACs
@click.command()
@click.option("--length", type=click.IntRange(1, 1024), default=32, show_default=True, help="Bytes.")
@click.option("--format", "fmt", type=click.Choice(["base64", "hex", "raw"]), default="base64", show_default=True)
@kms_command
def random(opts: Options, length: int, fmt: str) -> None:
    """Random bytes from the server's core."""
    with opts.client() as client:
        data = client.generate_random(length)
    if opts.as_json:
        opts.emit({"random": b64(data)})
    elif fmt == "raw":
        write_output(data, None)
    else:
        click.echo(data.hex() if fmt == "hex" else b64(data))


@click.group()
def mac() -> None:
    """HMACs with an EH_HMAC key."""


MAC_DIGEST = click.option("--digest-mode", type=DIGEST, help="Default EH_SHA_256.")


@mac.command("generate")
@KEYID
@MAC_DIGEST
@TEXT
@IN
@OUT
@BINARY_OUT
@kms_command
def mac_generate(
    opts: Options,
    keyid: str,
    digest_mode: str | None,
    text: str | None,
    in_path: str | None,
    out_path: str | None,
    binary: bool,
) -> None:
    """The MAC of a message."""
    message = read_input(in_path, text)
    with opts.client() as client:
        tag = client.generate_mac(keyid, message, digest_mode=digest_mode)
    _encoded(opts, "mac", tag, binary, out_path)


@mac.command("verify")
@KEYID
@click.option("--mac", "mac_b64", required=True, help="The MAC, base64.")
@MAC_DIGEST
@TEXT
@IN
@kms_command
def mac_verify(
    opts: Options, keyid: str, mac_b64: str, digest_mode: str | None, text: str | None, in_path: str | None
) -> None:
    """Verify a MAC; exits with status 6 if it does not match."""
    tag = read_b64(mac_b64, "--mac")
    message = read_input(in_path, text)
    with opts.client() as client:
        valid = client.verify_mac(keyid, message, tag, digest_mode=digest_mode)
    opts.emit({"result": valid}, "valid" if valid else None)
    if not valid:
        raise VerificationFailed("verification failed: the MAC does not match")


@click.command("reencrypt")
@KEYID
@AAD
@click.option("--to-keyid", help="The key to re-encrypt under (default: the primary version of --keyid).")
@click.option("--to-aad", help="Associated data for the new ciphertext (default: --aad).")
@IN
@OUT
@click.option("--binary", is_flag=True, help="Input and output are raw bytes, not base64.")
@kms_command
def reencrypt(
    opts: Options,
    keyid: str,
    aad: str | None,
    to_keyid: str | None,
    to_aad: str | None,
    in_path: str | None,
    out_path: str | None,
    binary: bool,
) -> None:
    """Re-encrypt a ciphertext of 'encrypt' under a key's primary version; the plaintext never leaves the server."""
    ciphertext = _ciphertext_input(in_path, binary)
    with opts.client() as client:
        got = client.re_encrypt(
            keyid, ciphertext, aad=_aad(aad), destination_keyid=to_keyid, destination_aad=_aad(to_aad)
        )
    if opts.as_json:
        opts.emit({"ciphertext": b64(got.ciphertext), "keyid": got.keyid, "keyversion": got.keyversion})
    else:
        _encoded(opts, "ciphertext", got.ciphertext, binary, out_path)
