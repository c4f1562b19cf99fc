# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Private to minibus.pki: no compatibility promise to other collections.
"""The read-only fleet audit behind the vault_audit module (playbooks/audit.yml).

It compares what Vault holds with the inventory and the hosts' local facts (ansible_local.minibus_certs):
live secret ids per host on the renewal and bootstrap mounts, secret ids no inventory host owns,
unexpired certificates for names outside the inventory, and hosts whose last successful renewal is too old.
Only lists and reads (plus secret-id accessor lookups, POSTs that change nothing) are sent to Vault.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import calendar
import time

from . import certs
from .errors import InvalidInput, MinibusError

AUDIT_SPEC = dict(
    approle_names=dict(type="list", elements="str",
                       default=["minibus-generate-sign-server-keys", "minibus-log-server"]),
    secret_id_mount_points=dict(type="list", elements="str", default=["approle", "minibus-bootstrap"], no_log=False),
    engine_mount_point=dict(type="str", default="pki_int"),
    hosts=dict(type="list", elements="dict", required=True),
    certificate_limit=dict(type="int", default=500),
    max_renewal_age=dict(type="str", default="25h"),
)

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def prepare(params):
    """Check the audit options before any request; returns a new dict with max_renewal_age_seconds."""
    p = dict(params)
    for name in ("approle_names", "secret_id_mount_points"):
        for value in p.get(name) or []:
            if not value or value.strip("/") != value or " " in value:
                raise InvalidInput("%s entry %r is not a Vault path segment such as approle." % (name, value))
    if not isinstance(p.get("hosts"), list):
        raise InvalidInput("hosts must be a list of {name, fact} entries (playbooks/audit.yml builds it).")
    for host in p["hosts"]:
        if not isinstance(host, dict) or not host.get("name"):
            raise InvalidInput("Every hosts entry needs a name (its inventory_hostname): got %r." % (host,))
    if (p.get("certificate_limit") or 0) < 0:
        raise InvalidInput("certificate_limit must be 0 or more.")
    p["max_renewal_age_seconds"] = certs.parse_duration(p.get("max_renewal_age") or "25h", "max_renewal_age")
    return p


def host_names(host):
    """Every name that identifies an inventory host: its inventory name and the names its fact reports."""
    names = {str(host["name"])}
    fact = host.get("fact") or {}
    request = fact.get("request") or {}
    if request.get("common_name"):
        names.add(str(request["common_name"]))
    names.update(str(n) for n in request.get("alt_names") or [])
    return names


def _epoch(text):
    try:
        return calendar.timegm(time.strptime(str(text), _TIME_FORMAT))
    except (TypeError, ValueError):
        return None


def _list(client, token, path):
    """LIST a path (GET ?list=true, logged as a list); [] when Vault has nothing there."""
    try:
        body = client.request("GET", path + "?list=true", token=token, what="listing %s" % path)
    except MinibusError as exc:
        if exc.status == 404:
            return []
        raise
    return list(((body or {}).get("data") or {}).get("keys") or [])


def live_secret_ids(client, token, mounts, approle_names):
    """[{mount, approle, accessor, host, metadata, expiration_time}] for every live secret id."""
    found = []
    for mount in mounts:
        for name in approle_names:
            base = "auth/%s/role/%s" % (mount, name)
            for accessor in _list(client, token, base + "/secret-id"):
                body = client.request("POST", base + "/secret-id-accessor/lookup", token=token,
                                      data={"secret_id_accessor": accessor},
                                      what="looking up a secret id accessor of %s" % base)
                data = (body or {}).get("data") or {}
                metadata = data.get("metadata") or {}
                found.append({"mount": mount, "approle": name, "accessor": accessor,
                              "host": metadata.get("host"), "metadata": metadata,
                              "expiration_time": data.get("expiration_time")})
    return found


def live_certificates(client, token, engine_mount_point, limit, now_epoch):
    """(unexpired leaf certificates [{serial, names, not_after}], serials not read because of limit)."""
    serials = _list(client, token, "%s/certs" % engine_mount_point)
    skipped = max(0, len(serials) - limit)
    found = []
    for serial in serials[skipped:]:
        body = client.request("GET", "%s/cert/%s" % (engine_mount_point, serial), token=token,
                              what="reading certificate %s" % serial)
        pem = ((body or {}).get("data") or {}).get("certificate") or ""
        try:
            cert = certs.load_certificate(pem)
        except Exception:  # pylint: disable=broad-except
            continue  # not a certificate we can read: nothing to say about its names
        if certs._is_ca(cert):
            continue
        info = certs.describe(cert)
        if _epoch(info["not_after"]) is None or _epoch(info["not_after"]) <= now_epoch:
            continue
        common_name = certs.subject_value(cert, "CN")
        names = sorted(set(([common_name] if common_name else []) + list(info["dns_names"])))
        found.append({"serial": info["serial"], "names": names, "not_after": info["not_after"]})
    return found, skipped


def findings_of(hosts, secret_ids, certificates, max_renewal_age_seconds, now_epoch):
    """The findings (pure logic): a list of {kind, message, ...}, each message one sentence."""
    findings = []
    owner_of = {}
    for host in hosts:
        for name in host_names(host):
            owner_of.setdefault(name, host["name"])
    per_host = {}
    for sid in secret_ids:
        owner = owner_of.get(str(sid["host"])) if sid["host"] is not None else None
        if owner is None:
            findings.append({"kind": "unowned_secret_id", "mount": sid["mount"], "approle": sid["approle"],
                             "accessor": sid["accessor"], "metadata_host": sid["host"],
                             "message": "A live secret id on auth/%s/role/%s (accessor %s, metadata host %r) belongs "
                                        "to no inventory host: destroy it (secret-id-accessor/destroy) unless you "
                                        "know whose it is." % (sid["mount"], sid["approle"], sid["accessor"],
                                                               sid["host"])})
        else:
            per_host.setdefault(owner, []).append(sid)
    for owner in sorted(per_host):
        held = per_host[owner]
        if len(held) > 1:
            findings.append({"kind": "multiple_secret_ids", "host": owner,
                             "accessors": ["%s:%s" % (s["mount"], s["accessor"]) for s in held],
                             "message": "Host %s has %d live secret ids where it should have one: one may be kept "
                                        "alive by someone else; destroy the ones its secret-id.json does not name."
                                        % (owner, len(held))})
    for cert in certificates:
        outside = [n for n in cert["names"] if n not in owner_of]
        if outside:
            findings.append({"kind": "foreign_certificate", "serial": cert["serial"], "names": outside,
                             "not_after": cert["not_after"],
                             "message": "Certificate %s (valid until %s) names %s, which no inventory host has: "
                                        "find who asked for it (audit log), then revoke it."
                                        % (cert["serial"], cert["not_after"], ", ".join(outside))})
    for host in hosts:
        finding = _renewal_finding(host, max_renewal_age_seconds, now_epoch)
        if finding:
            findings.append(finding)
    return findings


def _renewal_finding(host, max_age, now_epoch):
    fact = host.get("fact")
    name = host["name"]
    if not fact:
        return {"kind": "no_local_fact", "host": name,
                "message": "Host %s reported no minibus_certs local fact: it is unreachable or the minibus_certs "
                           "role never ran there, so its renewals cannot be checked." % name}
    if fact.get("error"):
        return {"kind": "local_fact_error", "host": name,
                "message": "Host %s's local fact reports an error (%s)." % (name, fact["error"])}
    status = fact.get("status") or {}
    last = status.get("last_success")
    last_epoch = _epoch(last)
    if last_epoch is None:
        # A host bootstrapped by Ansible and not yet renewed on its own has no renewer success yet;
        # its certificate's age says the same thing.
        cert = fact.get("certificate") or {}
        if cert.get("not_after_epoch") and cert.get("seconds_left"):
            return None
        return {"kind": "stale_renewal", "host": name, "last_success": None,
                "message": "Host %s has never renewed successfully and holds no valid certificate." % name}
    if now_epoch - last_epoch > max_age:
        return {"kind": "stale_renewal", "host": name, "last_success": last,
                "message": "Host %s last renewed successfully at %s, more than %d s ago (max_renewal_age): check "
                           "its renewer (journalctl -u minibus-certs-renew.service)." % (name, last, max_age)}
    return None


def run_audit(client, token, p, now_epoch=None):
    """The whole audit: requests (lists and reads), then the findings. Returns the module result."""
    now_epoch = time.time() if now_epoch is None else now_epoch
    secret_ids = live_secret_ids(client, token, p["secret_id_mount_points"], p["approle_names"])
    certificates, skipped = live_certificates(client, token, p["engine_mount_point"], p["certificate_limit"],
                                              now_epoch)
    findings = findings_of(p["hosts"], secret_ids, certificates, p["max_renewal_age_seconds"], now_epoch)
    return {"changed": False, "findings": findings, "live_secret_ids": len(secret_ids),
            "live_certificates": len(certificates), "certificates_not_read": skipped,
            "hosts": len(p["hosts"]), "vault_requests": client.request_count}
