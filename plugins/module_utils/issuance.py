# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Private to minibus.pki: no compatibility promise to other collections.
"""ensure_certificate(): the one flow behind the vault_pki_issue module and the on-host renewer.

decide (no Vault request while the certificate is good) -> authenticate -> rotate the secret id and
persist it before anything else -> sign (or issue) -> install atomically -> revoke the token.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import grp
import os
import pwd

from collections.abc import Mapping

from . import _authenticator, _privdrop, certs, secret_store, vault
from .errors import InvalidAnswer, InvalidInput, MinibusError, SecretIdRejected
from .files import STORE_DIR, CertStore, exclusive_lock, read_ca_bundle
from .options import FROM_ENV, check_ca_bundle, connection_warnings, validate_connection

# Options of the certificate itself (the connection and authentication options come from options.py).
CERTIFICATE_SPEC = dict(
    engine_mount_point=dict(type="str", default="pki_int"),
    role_name=dict(type="str", default="minibus-server"),
    common_name=dict(type="str", required=True),
    alt_names=dict(type="list", elements="str", default=[]),
    ip_sans=dict(type="list", elements="str", default=[]),
    ttl=dict(type="str", default="24h"),
    method=dict(type="str", default="sign", choices=["sign", "issue"]),
    key_type=dict(type="str", default="ec", choices=["ec", "rsa", "ed25519"]),
    key_bits=dict(type="int"),
    subject=dict(type="dict", default={}),
    cert_path=dict(type="path", required=True),
    key_path=dict(type="path", required=True),
    chain_path=dict(type="path"),
    ca_path=dict(type="path"),
    fullchain_path=dict(type="path"),
    trust_anchor_path=dict(type="path"),
    extended_key_usage=dict(type="list", elements="str", choices=sorted(certs.KEY_USAGES), default=[]),
    secret_id_store=dict(type="path"),
    secret_id_wrap_ttl=dict(type="str", default="60s", no_log=False),
    renew_before=dict(type="str"),
    force=dict(type="bool", default=False),
)

_DIFF_FIELDS = ("subject", "dns_names", "ip_addresses", "serial", "not_after", "key_type", "key_bits")


class Request(Mapping):
    """One run's options, checked and normalised once by prepare(); never changed afterwards.

    Read as a mapping (p["cert_path"], p.get("chain_path")) or by attribute (p.cert_path). What prepare()
    adds: ttl_seconds, key_bits, subject, extended_key_usage, renew_before_seconds, key_mode, uid, gid,
    drop_ids (uid and gid the work runs as after a privilege drop, or None) and, with connection=True,
    validated_auth (the auth method of the given credentials, or None). A changed copy comes from
    replace(): the dropped child's own (uid=-1, gid=-1, privileges_dropped=True), the loaded trust anchors.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields):
        object.__setattr__(self, "_fields", dict(fields))

    def __getitem__(self, name):
        return self._fields[name]

    def __iter__(self):
        return iter(self._fields)

    def __len__(self):
        return len(self._fields)

    def __getattr__(self, name):
        if name == "_fields":  # not initialised (copy, pickle): no recursion
            raise AttributeError(name)
        try:
            return self._fields[name]
        except KeyError:
            raise AttributeError(name)

    def __setattr__(self, name, value):
        raise AttributeError("a prepared Request is immutable: use replace(%s=...)" % name)

    def __repr__(self):  # never the values: they may hold a secret id or token
        return "Request(%s)" % ", ".join(sorted(self._fields))

    def __reduce__(self):  # copy and pickle rebuild it through __init__
        return (Request, (self._fields,))

    def replace(self, **changes):
        """A copy with changes applied."""
        return Request(dict(self._fields, **changes))


def prepare(params, check_mode=False, connection=False):
    """Validate and normalise the certificate options before any network call. Returns a Request.

    In check mode an owner or group that does not exist yet is tolerated: the same run would create
    it (the role creates the renewal account before the certificate), and nothing is written anyway.
    connection=True also checks the connection options (options.validate_connection; the CA bundle only
    when no privilege drop follows: the dropped child reads it) and the credentials, once.
    """
    p = dict(params)
    if not p.get("common_name") or not str(p["common_name"]).strip():
        raise InvalidInput("common_name is empty: give the host name the certificate is for.")
    for name in ("engine_mount_point", "role_name"):
        value = p.get(name) or ""
        if not value or value.strip("/") != value or " " in value:
            raise InvalidInput("%s %r is not a Vault path segment such as pki_int or minibus-server." % (name, value))
    p["ttl_seconds"] = certs.parse_duration(p.get("ttl") or "24h", "ttl")
    p["key_bits"] = certs.validate_key(p.get("key_type") or "ec", p.get("key_bits"))
    p["subject"] = certs.validate_subject(p.get("subject"))
    for ip in p.get("ip_sans") or []:
        if not certs._is_ip(ip):
            raise InvalidInput("ip_sans entry %r is not an IP address." % ip)
    p["extended_key_usage"] = list(p.get("extended_key_usage") or [])
    for usage in p["extended_key_usage"]:
        if usage not in certs.KEY_USAGES:
            raise InvalidInput("extended_key_usage entry %r is unknown: use clientAuth (a client) or serverAuth (a log "
                               "server)." % (usage,))
    p["renew_before_seconds"] = (certs.parse_duration(p["renew_before"], "renew_before")
                                 if p.get("renew_before") else None)
    p["key_mode"] = _mode(p.get("mode"), 0o600)
    try:
        p["uid"], p["gid"] = _ids(p.get("owner"), p.get("group"))
    except InvalidInput:
        if not check_mode:
            raise
        p["uid"], p["gid"] = -1, -1
    if p.get("secret_id_store") and not p.get("approle_name"):
        raise InvalidInput("secret_id_store needs approle_name: the next secret id is minted for that AppRole role.")
    p["drop_ids"] = None
    if _privdrop.needs_drop(p["uid"]):
        # Root with another owner: the work runs as that account, in its primary group unless group is set.
        p["drop_ids"] = (p["uid"], p["gid"] if p["gid"] != -1 else _primary_gid(p["uid"], p.get("owner")))
    if connection:
        validate_connection(p, read_ca_cert=p["drop_ids"] is None)
        p["validated_auth"] = _authenticator.validate(p, required=False)
    return Request(p)


def _primary_gid(uid, owner):
    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:
        raise InvalidInput("owner %s has no account on this host to take a group from: set group too." % owner)


def load_trust_anchors(path):
    """The pinned root CA certificate(s) from a PEM file on the host: (certificates, text), a bounded read."""
    try:
        data = read_ca_bundle(path, "trust_anchor_path")
    except MinibusError as exc:
        raise InvalidInput(exc.message)
    if data is None:
        raise InvalidInput("Could not read trust_anchor_path %s (no such file): it must be readable by the account "
                           "that runs the issuance." % path)
    return certs.parse_trust_anchors(data, path)


def _mode(value, default):
    if value in (None, ""):
        return default
    if isinstance(value, int):
        return value
    try:
        return int(str(value), 8)
    except ValueError:
        raise InvalidInput("mode %r is not an octal file mode such as 0600." % (value,))


def owner_ids(owner, group=None):
    """uid and gid to work as for owner (name or number) and group (unset: the owner's primary group)."""
    uid, gid = _ids(owner, group)
    if gid == -1 and uid != -1:
        gid = _primary_gid(uid, owner)
    return uid, gid


def _ids(owner, group):
    uid = gid = -1
    try:
        if owner not in (None, ""):
            uid = int(owner) if str(owner).isdigit() else pwd.getpwnam(owner).pw_uid
        if group not in (None, ""):
            gid = int(group) if str(group).isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise InvalidInput("The owner %r or group %r does not exist on this host: create it first." % (owner, group))
    return uid, gid


def _store_of(p):
    return CertStore(p["cert_path"], p["key_path"], p.get("chain_path"), p.get("ca_path"), p.get("fullchain_path"))


def _root_needs_root_owned(p):
    """Root working without owner: the uid every store directory must have (0), else None."""
    return 0 if os.geteuid() == 0 and not p.get("privileges_dropped") and p["uid"] in (-1, 0) else None


def plan(p, now=None):
    """What would be done, without any Vault request: (decision, why the secret id store is unusable or None)."""
    store = _store_of(p)
    store.check_entries(_root_needs_root_owned(p))
    if p.get("secret_id_store") and _root_needs_root_owned(p) is not None:
        directory = os.path.dirname(os.path.abspath(p["secret_id_store"]))
        if os.path.isdir(directory) and os.stat(directory).st_uid != 0:
            raise MinibusError("The directory %s of secret_id_store belongs to uid %d, and root does not write where "
                               "another account can change things: set owner to that account; nothing was "
                               "requested from Vault." % (directory, os.stat(directory).st_uid))
    content = store.read()
    decision = certs.needs_renewal(content["cert"], content["key"], p, now=now,
                                   renew_before=p["renew_before_seconds"], force=p.get("force"))
    if not decision.needed and any(content.get(r) is None for r in ("chain", "ca", "fullchain") if r in store.paths):
        decision = certs.Decision(True, "the CA chain or issuing CA file is missing", decision.current)
    if not decision.needed and not store.links_in_place():
        decision = certs.Decision(True, "the files are not yet in the atomic certificate store", decision.current)
    secret_problem = None
    if p.get("secret_id_store"):
        secret_problem = secret_store.problem(secret_store.load(p["secret_id_store"]), now)
    return decision, secret_problem


# Vault requests of one issuance at most (lookups, unwraps, login, mint, sign, revoke), and the wait for
# another run's store lock (files.exclusive_lock).
_MAX_REQUESTS = 10
_LOCK_WAIT_SECONDS = 60


def issuance_deadline(p, check_mode=False):
    """Wall-clock bound of one issuance run as the owner: every request's timeout and retries, plus the lock.

    Check mode makes no request: the status bound (_privdrop.DEFAULT_DEADLINE_SECONDS) applies.
    """
    if check_mode:
        return _privdrop.DEFAULT_DEADLINE_SECONDS
    try:
        timeout = int(p.get("timeout") or 30)
        retries = 3 if p.get("retries") is None else int(p["retries"])
    except (TypeError, ValueError):  # refused with its own sentence by validate_connection, in the child
        timeout, retries = 30, 3
    per_request = timeout * (retries + 1) + 5 * retries  # vault.VaultClient backs off at most 5 s a retry
    return _LOCK_WAIT_SECONDS + _MAX_REQUESTS * per_request + _privdrop.DEFAULT_DEADLINE_SECONDS


def ensure_certificate(params, check_mode=False, now=None):
    """Run the whole flow. params: connection + authentication + certificate options (env already resolved).

    Returns a result dict (never holding a secret); raises MinibusError with one sentence on failure.
    """
    p = prepare(params, check_mode, connection=True)
    if p.drop_ids is not None:
        # Root with another owner: all of the work, store and Vault alike, runs as that account.
        if not check_mode:
            vault.preload()
        uid, gid = p.drop_ids
        result = _privdrop.run_as(uid, gid, _ensure, p.replace(uid=-1, gid=-1, drop_ids=None, privileges_dropped=True),
                                  check_mode, now, deadline_seconds=issuance_deadline(p, check_mode),
                                  work="the check-mode plan" if check_mode else "the issuance")
        result["privileges_dropped"] = True
        return result
    return _ensure(p, check_mode, now)


def _ensure(p, check_mode, now):
    auth_method = p.validated_auth
    decision, secret_problem = plan(p, now)
    result = _result(decision, secret_problem)
    if not result["changed"]:
        return result
    if check_mode:
        result["diff"]["after"] = _planned_after(p, decision)
        return result
    if auth_method is None and not p.get("secret_id_store"):
        _authenticator.validate(p, required=True)  # raises the "no credentials" sentence
    if p.get("privileges_dropped"):
        cert_dir = os.path.dirname(os.path.abspath(p["cert_path"]))
        if not os.path.isdir(cert_dir):
            raise InvalidInput("The directory %s of cert_path does not exist: create it owned by %s (the "
                               "minibus_certs role does), since root leaves the store to its owner; nothing was "
                               "requested from Vault." % (cert_dir, p.get("owner")))
    if p.get("ca_cert") and p.get("validate_certs") is not False:
        problem = check_ca_bundle(p["ca_cert"], _ca_cert_label(p))  # as the owner, bounded
        if problem:
            raise InvalidInput(problem)
    anchors, anchor_pem = load_trust_anchors(p["trust_anchor_path"]) if p.get("trust_anchor_path") else (None, None)
    p = p.replace(trust_anchors=anchors, trust_anchor_pem=anchor_pem)
    _store_of(p).check_writable()
    client = vault.client_from_options(p)
    lock_path = os.path.join(os.path.dirname(os.path.abspath(p["cert_path"])), STORE_DIR, ".lock")
    try:
        with exclusive_lock(lock_path):
            # Another run may have renewed while we waited for the lock.
            decision, secret_problem = plan(p, now)
            result = _result(decision, secret_problem)
            if result["changed"]:
                _run(client, p, auth_method, decision, result)
    except MinibusError as exc:
        exc.message = client.scrub(exc.message)
        exc.args = (exc.message,)
        raise
    finally:
        result["vault_requests"] = client.request_count
        client.close()
    result["warnings"] = connection_warnings(p) + result["warnings"]
    return result


def _ca_cert_label(p):
    variable = (p.get(FROM_ENV) or {}).get("ca_cert")
    return "ca_cert (from %s)" % variable if variable else "ca_cert"


def plan_result(decision, secret_problem):
    """The check-mode result for plan()'s answer (changed, reason, serial, not_after...): health shows the same.

    It also names the installed certificate's issuer and authority key id: the metrics count hosts per
    issuing CA during a CA rotation.
    """
    result = _result(decision, secret_problem)
    result.update((k, (decision.current or {}).get(k)) for k in ("issuer", "authority_key_id"))
    return result


def _result(decision, secret_problem):
    reasons = []
    if decision.needed:
        reasons.append(decision.reason)
    if secret_problem:
        reasons.append("renewal needs a new secret id: %s" % secret_problem)
    before = _diff_view(decision.current)
    result = {
        "changed": bool(reasons), "issued": False, "secret_id_rotated": False,
        "reason": "; ".join(reasons) if reasons else decision.reason, "warnings": [], "vault_requests": 0,
        "diff": {"before": before, "after": before},
    }
    result.update(_public(decision.current))
    return result


def _public(info):
    if not info:
        return {"serial": None, "not_before": None, "not_after": None, "seconds_remaining": 0, "subject": None}
    return dict((k, info[k]) for k in ("serial", "not_before", "not_after", "seconds_remaining", "subject"))


def _diff_view(info):
    return dict((k, info[k]) for k in _DIFF_FIELDS) if info else {}


def _planned_after(p, decision):
    if not decision.needed:
        return _diff_view(decision.current)
    return {"subject": "CN=%s (new certificate)" % p["common_name"], "dns_names": certs._dns_names(
        p["common_name"], p.get("alt_names")), "ip_addresses": list(p.get("ip_sans") or []),
        "serial": "(assigned by Vault)", "not_after": "(about %ds after issuance)" % p["ttl_seconds"],
        "key_type": p["key_type"], "key_bits": p["key_bits"]}


def _credentials(p, auth_method):
    """Explicit credentials win; otherwise the stored secret id (the renewer's case)."""
    if auth_method is not None:
        return p, None
    record = secret_store.load(p["secret_id_store"])
    problem = secret_store.problem(record)
    if problem:
        raise MinibusError("No usable Vault credentials: %s; the next Ansible run delivers a new wrapped secret "
                           "id (or set secret_id / MINIBUS_CSR_SECRET_ID)." % problem)
    if not p.get("role_id"):
        raise InvalidInput("role_id is needed to log in with the stored secret id.")
    # Marked before the login: if this run dies after Vault consumed the id, the next run knows.
    record = secret_store.mark(p["secret_id_store"], record, secret_store.IN_USE, p["uid"], p["gid"])
    return dict(p, secret_id=record["secret_id"]), record


def _run(client, p, auth_method, decision, result):
    credentials, stored = _credentials(p, auth_method)
    if stored is not None:
        client.expect_index(stored.get("vault_index"))
    try:
        session = _authenticator.authenticate(client, credentials)
    except SecretIdRejected:
        if stored is not None:
            secret_store.mark(p["secret_id_store"], stored, secret_store.CONSUMED, p["uid"], p["gid"])
        raise
    except MinibusError as exc:
        if stored is not None and exc.not_processed:
            # Vault was unreachable or sealed: the secret id was not spent, so it is ready again.
            secret_store.mark(p["secret_id_store"], stored, secret_store.READY, p["uid"], p["gid"])
        raise
    try:
        if p.get("secret_id_store"):
            _rotate_secret_id(client, session, p)
            result["secret_id_rotated"] = True
        if decision.needed:
            _issue_and_install(client, session, p, result)
    finally:
        if session.owned:
            try:
                vault.revoke_self(client, session.token)
            except MinibusError as exc:
                result["warnings"].append("Could not revoke the token this run obtained (%s); it expires on its "
                                          "own within the AppRole token_ttl." % exc.message)


def _rotate_secret_id(client, session, p):
    """Mint the next secret id (wrapped), check where it came from, persist it before anything else."""
    mount = p.get("auth_mount_point") or "approle"
    # Metadata naming the host shows in the audit log and on the accessor (spotting ids nobody owns).
    metadata = {"host": p["common_name"], "minted_by": p.get("minted_by") or "vault_pki_issue"}
    wrap = vault.mint_wrapped_secret_id(client, session.token, p["approle_name"], mount,
                                        p.get("secret_id_wrap_ttl") or "60s", metadata=metadata)
    # Minted a moment ago over this connection: its creation path is in the minting answer, so no
    # lookup request is needed to check it (5 requests per renewal instead of 6).
    data = vault.unwrap_secret_id(client, wrap["token"], mount, p["approle_name"],
                                  known_creation_path=wrap.get("creation_path") or "")
    secret_store.save(p["secret_id_store"], data["secret_id"], data.get("secret_id_accessor"),
                      data.get("secret_id_ttl"), p["uid"], p["gid"], vault_index=client.index)


def _issue_and_install(client, session, p, result):
    names = dict(alt_names=p.get("alt_names"), ip_sans=p.get("ip_sans"), ttl=p.get("ttl"))
    if p["method"] == "sign":
        key = certs.generate_private_key(p["key_type"], p["key_bits"])
        csr = certs.build_csr(key, p["common_name"], p.get("alt_names"), p.get("ip_sans"), p["subject"])
        answer = vault.sign_csr(client, session.token, p["engine_mount_point"], p["role_name"], csr,
                                p["common_name"], **names)
        key_pem = certs.private_key_pem(key)
    else:
        answer = vault.issue(client, session.token, p["engine_mount_point"], p["role_name"], p["common_name"],
                             p["key_type"], p["key_bits"], **names)
        key_pem = answer.get("private_key") or ""
        try:
            key = certs.load_private_key(key_pem)
        except (ValueError, TypeError, UnicodeError):
            raise InvalidAnswer("Vault's answer was refused: its private_key is not a readable unencrypted PEM key; "
                                "nothing was written.")
    cert, chain = certs.check_issued(answer, key, p, p.get("trust_anchors"))
    info = certs.describe(cert)
    chain_pem = "".join(_pem(c) for c in answer.get("ca_chain") or [answer.get("issuing_ca") or ""])
    intermediates = [c for c in chain if c.subject != c.issuer]  # the roots stay with the trust anchor
    files = {"cert": _pem(answer["certificate"]), "key": _pem(key_pem), "chain": chain_pem,
             "fullchain": _pem(answer["certificate"]) + "".join(_pem(certs.certificate_pem(c)) for c in intermediates),
             # The trust anchor rsyslog checks peers with comes from the host's pinned file, never from the answer.
             "ca": _pem(p["trust_anchor_pem"] if p.get("trust_anchors") else answer.get("issuing_ca") or "")}
    if not p.get("trust_anchors"):
        result["warnings"].append("trust_anchor_path is not set: the certificate was checked against the issuing "
                                  "CA in Vault's own answer, so the chain is not pinned; set trust_anchor_path to "
                                  "the root CA certificate.")
    store = _store_of(p)
    store.install(files, info["serial"], key_mode=p["key_mode"], uid=p["uid"], gid=p["gid"])
    missing = certs.missing_subject_fields(cert, p["subject"])
    if missing:
        result["warnings"].append(
            "The certificate lacks the subject fields %s that the CSR asked for: Vault's sign keeps only CN and SANs "
            "from a CSR; set province/locality/... on the PKI role %s." % (", ".join(missing), p["role_name"]))
    result["warnings"].extend("Vault: %s" % w for w in answer.get("warnings") or [])
    result.update(_public(info))
    result["issued"] = True
    result["diff"]["after"] = _diff_view(info)


def _pem(text):
    text = (text or "").strip()
    return text + "\n" if text else ""
