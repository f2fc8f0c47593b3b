"""The keys port on AWS KMS (moto server's KMS, the suite's moto server) and on
Scaleway Key Manager (devstack/key_manager_standin.py, the real API's paths
and shapes): wrapping bound to tenant and version, other keys' ciphertexts,
wrong tokens and dead endpoints refused, nothing written when the provider
cannot answer, the sealed-fields flow over HTTP, and the move off the local
key file with rotate_keys.

Rotation re-wraps every tenant's keys and other modules' tests expect the
local key file to unwrap them all: this module's data keys are re-wrapped
back under it when the module ends (`back_to_the_key_file`)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import boto3
import pg8000.native
import pytest
from botocore.config import Config

from chalicelib import rotate_keys, runtime
from chalicelib.adapters.key_manager import ScalewayKeyManager
from chalicelib.adapters.keys import KeyRing, LocalKeyFile, OwnedKeys
from chalicelib.adapters.kms import AwsKmsKeys, kms_client
from chalicelib.adapters.postgres import Database, PostgresDataKeys
from chalicelib.config import Settings, settings
from chalicelib.domain.encryption import DecryptionRefused, FieldPlace
from chalicelib.domain.errors import KeysUnavailable
from chalicelib.ports import WrappedKey
from chalicelib.rotate_keys import rewrap
from chalicelib.secret import Secret
from chalicelib.usecases.create_tenant import create_tenant
from chalicelib.usecases.field_encryption import FieldCipher, wrap_context
from devstack.anchor_standins import dead_endpoint
from devstack.key_manager_standin import KeyManagerStandIn
from devstack.stack import LocalStack
from tests.conftest import remember
from tests.fakes import FrozenClock
from tests.integration.web import Session, code, enrolled_owner, login, signup

Connect = Callable[[], pg8000.native.Connection]
CONTEXT = wrap_context(uuid.UUID("00000000-0000-4000-8000-000000000001"), 1)
OTHER_TENANT = wrap_context(uuid.UUID("00000000-0000-4000-8000-000000000002"), 1)
OTHER_VERSION = wrap_context(uuid.UUID("00000000-0000-4000-8000-000000000001"), 2)
IBAN = "FR7630006000011234567890189"


@pytest.fixture(scope="module")
def aws(stack: LocalStack) -> Iterator[None]:
    """botocore's own settings for local stand-ins: moto server as KMS's
    endpoint, and credentials from the default chain (the role, on AWS)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL_KMS", stack.moto.url)
        patch.setenv("AWS_ACCESS_KEY_ID", "role-key-id")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "role-secret")
        patch.delenv("AWS_PROFILE", raising=False)
        yield


def _new_kms_key() -> str:
    kms = boto3.session.Session().client("kms", config=Config(region_name="eu-west-3"))
    arn: str = kms.create_key(Description="einvoice data keys (tests)")["KeyMetadata"]["Arn"]
    return arn


@pytest.fixture(scope="module")
def kms_key(aws: None) -> str:
    return _new_kms_key()


@pytest.fixture(scope="module")
def kms(kms_key: str) -> AwsKmsKeys:
    return AwsKmsKeys(kms_client(kms_key), kms_key)


@pytest.fixture(scope="module")
def key_manager() -> Iterator[KeyManagerStandIn]:
    token = secrets.token_urlsafe(32)
    remember(token)
    standin = KeyManagerStandIn(token)
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()


@pytest.fixture(scope="module")
def scw_key(key_manager: KeyManagerStandIn) -> str:
    return key_manager.create_key()


def scaleway(standin: KeyManagerStandIn, key_id: str, token: str | None = None,
             api_url: str | None = None) -> ScalewayKeyManager:
    return ScalewayKeyManager(key_id, "fr-par", Secret(token or standin.token),
                              api_url=api_url or standin.url, timeout=2.0)


@pytest.fixture(scope="module", autouse=True)
def back_to_the_key_file(stack: LocalStack, as_owner: Connect, kms: AwsKmsKeys,
                         key_manager: KeyManagerStandIn, scw_key: str) -> Iterator[None]:
    yield
    owner = as_owner()
    try:
        ring = KeyRing(LocalKeyFile(stack.master_key_file),
                       [kms, scaleway(key_manager, scw_key)])
        rewrap(owner, ring)
        [[left]] = owner.run("SELECT count(*) FROM tenant_data_keys "
                             "WHERE master_key_id NOT LIKE 'local-%'")
    finally:
        owner.close()
    assert left == 0


def providers(kms: AwsKmsKeys, key_manager: KeyManagerStandIn,
              scw_key: str) -> dict[str, OwnedKeys]:
    return {"aws-kms": kms, "scaleway-key-manager": scaleway(key_manager, scw_key)}


@pytest.fixture(params=["aws-kms", "scaleway-key-manager"])
def provider(request: pytest.FixtureRequest, kms: AwsKmsKeys, key_manager: KeyManagerStandIn,
             scw_key: str) -> OwnedKeys:
    return providers(kms, key_manager, scw_key)[request.param]


def test_a_data_key_unwraps_only_for_its_tenant_and_version(provider: OwnedKeys) -> None:
    data_key, wrapped = provider.generate_data_key(CONTEXT)
    assert len(data_key) == 32 and data_key not in wrapped.blob
    assert wrapped.master_key_id == provider.current_key_id
    assert provider.unwrap(wrapped, CONTEXT) == data_key
    for elsewhere in (OTHER_TENANT, OTHER_VERSION, b""):
        with pytest.raises(DecryptionRefused):
            provider.unwrap(wrapped, elsewhere)
    rewrapped = provider.wrap(data_key, OTHER_TENANT)  # rotation's call
    assert rewrapped.blob != wrapped.blob and provider.unwrap(rewrapped, OTHER_TENANT) == data_key
    altered = WrappedKey(wrapped.master_key_id,
                         wrapped.blob[:-1] + bytes([wrapped.blob[-1] ^ 1]))
    with pytest.raises(DecryptionRefused):
        provider.unwrap(altered, CONTEXT)


def test_kms_refuses_a_ciphertext_of_another_key(kms: AwsKmsKeys) -> None:
    other = AwsKmsKeys(kms_client(kms_key_arn := _new_kms_key()), kms_key_arn)
    _, theirs = other.generate_data_key(CONTEXT)
    with pytest.raises(DecryptionRefused, match="not this deployment's KMS key"):
        kms.unwrap(theirs, CONTEXT)  # it names their key: refused before any call
    # Relabelled as ours: Decrypt is pinned to our key (KeyId), so KMS refuses
    # it. moto answers AccessDeniedException (a refusal we read as a fault,
    # as KMS's own AccessDenied is one); KMS answers IncorrectKeyException,
    # which is DecryptionRefused (tests/unit/test_kms_errors.py). Either way
    # the data key never comes back.
    with pytest.raises(KeysUnavailable, match="AccessDeniedException"):
        kms.unwrap(WrappedKey(kms.current_key_id, theirs.blob), CONTEXT)


def test_key_manager_refuses_a_ciphertext_of_another_key(
        key_manager: KeyManagerStandIn, scw_key: str) -> None:
    ours = scaleway(key_manager, scw_key)
    theirs = scaleway(key_manager, key_manager.create_key())
    _, wrapped = theirs.generate_data_key(CONTEXT)
    calls = len(key_manager.calls)
    with pytest.raises(DecryptionRefused, match="not this deployment's Key Manager key"):
        ours.unwrap(wrapped, CONTEXT)
    assert len(key_manager.calls) == calls  # refused before any call
    with pytest.raises(DecryptionRefused, match="HTTP 400 invalid_arguments"):
        ours.unwrap(WrappedKey(ours.current_key_id, wrapped.blob), CONTEXT)


def test_key_manager_is_called_with_its_real_paths_and_never_for_generate_data_key(
        key_manager: KeyManagerStandIn, scw_key: str) -> None:
    """Its generate-data-key takes no associated data: a key it made would not
    be bound to a tenant, so data keys are drawn here and wrapped by encrypt."""
    before = len(key_manager.calls)
    keys = scaleway(key_manager, scw_key)
    _, wrapped = keys.generate_data_key(CONTEXT)
    keys.unwrap(wrapped, CONTEXT)
    assert key_manager.calls[before:] == [f"encrypt {scw_key}", f"decrypt {scw_key}"]
    assert keys.current_key_id == f"scaleway:fr-par:{scw_key}"


def test_a_wrong_token_is_unavailable_and_never_logged(
        key_manager: KeyManagerStandIn, scw_key: str,
        service_logs: pytest.LogCaptureFixture) -> None:
    _, wrapped = scaleway(key_manager, scw_key).generate_data_key(CONTEXT)
    wrong = secrets.token_urlsafe(32)
    remember(wrong)
    impostor = scaleway(key_manager, scw_key, token=wrong)
    for attempt in (lambda: impostor.generate_data_key(CONTEXT),
                    lambda: impostor.unwrap(wrapped, CONTEXT)):
        with pytest.raises(KeysUnavailable, match="HTTP 401 denied_authentication") as refused:
            attempt()
        assert wrong not in str(refused.value) and key_manager.token not in str(refused.value)


def test_a_disabled_or_deleted_key_is_unavailable_not_tampering(
        key_manager: KeyManagerStandIn) -> None:
    """A key disabled, or deleted (unusable at once on Key Manager, gone for
    good after its 7 days of grace): what it wrapped does not open, and that is
    reported as a fault of ours, never as tampering."""
    key_id = key_manager.create_key()
    keys = scaleway(key_manager, key_id)
    _, wrapped = keys.generate_data_key(CONTEXT)
    key_manager.disable(key_id)
    with pytest.raises(KeysUnavailable, match="HTTP 412 precondition_failed"):
        keys.unwrap(wrapped, CONTEXT)
    key_manager.delete(key_id)
    with pytest.raises(KeysUnavailable, match="HTTP 404 not_found"):
        keys.unwrap(wrapped, CONTEXT)


def test_a_provider_rotation_keeps_older_wrappings_open(
        key_manager: KeyManagerStandIn) -> None:
    """Key Manager rotates key versions itself: nothing to re-wrap."""
    key_id = key_manager.create_key()
    keys = scaleway(key_manager, key_id)
    data_key, before = keys.generate_data_key(CONTEXT)
    assert key_manager.rotate(key_id) == 2
    _, after = keys.generate_data_key(CONTEXT)
    assert before.master_key_id == after.master_key_id == keys.current_key_id
    assert before.blob[:5] != after.blob[:5]  # the stand-in's version header moved on
    assert keys.unwrap(before, CONTEXT) == data_key


@contextmanager
def kms_unreachable(kms_key: str) -> Iterator[AwsKmsKeys]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL_KMS", dead_endpoint())
        yield AwsKmsKeys(kms_client(kms_key), kms_key)


@pytest.fixture(params=["aws-kms", "scaleway-key-manager"])
def unreachable(request: pytest.FixtureRequest, kms_key: str,
                scw_key: str) -> Iterator[OwnedKeys]:
    if request.param == "aws-kms":
        with kms_unreachable(kms_key) as keys:
            yield keys
    else:
        yield ScalewayKeyManager(scw_key, "fr-par", Secret("any-token"),
                                 api_url=dead_endpoint(), timeout=1.0)


def test_a_dead_endpoint_is_unavailable_and_nothing_is_written(
        unreachable: OwnedKeys, database: Database, superuser: Connect) -> None:
    with pytest.raises(KeysUnavailable, match=r"EndpointConnectionError|unreachable"):
        unreachable.wrap(bytes(32), CONTEXT)
    tenant = create_tenant(f"Offline {uuid.uuid4().hex[:6]}", database.unit_of_work)
    cipher = FieldCipher(unreachable)
    with pytest.raises(KeysUnavailable), database.transaction(tenant) as conn:
        keys = PostgresDataKeys(conn, tenant)
        cipher.seal(keys, FieldPlace(tenant, "user_totp", "secret", "row"), IBAN)
    root = superuser()
    try:
        [[count]] = root.run("SELECT count(*) FROM tenant_data_keys WHERE tenant_id = :t",
                             t=str(tenant))
    finally:
        root.close()
    assert count == 0


def test_a_provider_that_comes_back_answers_again(key_manager: KeyManagerStandIn,
                                                   scw_key: str) -> None:
    keys = scaleway(key_manager, scw_key)
    data_key, wrapped = keys.generate_data_key(CONTEXT)
    key_manager.stop()
    try:
        with pytest.raises(KeysUnavailable, match="unreachable"):
            keys.unwrap(wrapped, CONTEXT)
    finally:
        key_manager.start()  # same port: the service is back
    assert keys.unwrap(wrapped, CONTEXT) == data_key


@contextmanager
def deployed_with(env: dict[str, str | None]) -> Iterator[None]:
    """The functions' settings as a deployment would set them (a fresh container)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            if value is None:
                patch.delenv(name, raising=False)
            else:
                patch.setenv(name, value)
        fresh_container()
        try:
            yield
        finally:
            fresh_container()
    fresh_container()


def fresh_container() -> None:
    settings.cache_clear()
    runtime.key_wrapper.cache_clear()
    runtime.field_cipher.cache_clear()


def provider_env(name: str, kms_key: str, key_manager: KeyManagerStandIn,
                 scw_key: str) -> dict[str, str | None]:
    if name == "aws-kms":
        return {"EINVOICE_KEY_PROVIDER": "aws-kms", "EINVOICE_KMS_KEY_ID": kms_key,
                "EINVOICE_MASTER_KEY_FILE": None}
    return {"EINVOICE_KEY_PROVIDER": "scaleway-key-manager", "EINVOICE_SCW_KEY_ID": scw_key,
            "EINVOICE_SCW_SECRET_KEY": key_manager.token, "EINVOICE_SCW_API_URL": key_manager.url,
            "EINVOICE_MASTER_KEY_FILE": None}


def master_keys_of(superuser: Connect, tenant: str) -> list[str]:
    root = superuser()
    try:
        return [row[0] for row in root.run(
            "SELECT master_key_id FROM tenant_data_keys WHERE tenant_id = :t ORDER BY version",
            t=tenant)]
    finally:
        root.close()


@pytest.mark.parametrize("name", ["aws-kms", "scaleway-key-manager"])
def test_second_factor_secrets_are_sealed_by_the_provider_over_http(
        client: Any, frozen: FrozenClock, superuser: Connect, name: str, kms_key: str,
        key_manager: KeyManagerStandIn, scw_key: str) -> None:
    env = provider_env(name, kms_key, key_manager, scw_key)
    with deployed_with(env):
        session, email, secret, _ = enrolled_owner(client, frozen)
        tenant = session.body["tenant_id"]
        expected = runtime.key_wrapper().current_key_id
        fresh_container()  # another container: its cache is empty, the provider unwraps
        again = Session(login(client, email))
        frozen.moment += timedelta(seconds=30)
        assert again.post(client, "/mfa", {"code": code(secret, frozen)}).status_code == 200
    assert master_keys_of(superuser, tenant) == [expected]
    assert expected.startswith("arn:aws:kms:" if name == "aws-kms" else "scaleway:fr-par:")


def test_an_unreachable_provider_answers_503_and_writes_nothing_over_http(
        client: Any, frozen: FrozenClock, superuser: Connect, key_manager: KeyManagerStandIn,
        scw_key: str) -> None:
    response, _ = signup(client)
    session = Session(response)
    tenant = session.body["tenant_id"]
    env = provider_env("scaleway-key-manager", "", key_manager, scw_key)
    env["EINVOICE_SCW_API_URL"] = dead_endpoint()
    with deployed_with(env):
        refused = session.post(client, "/mfa/totp", {})
    assert refused.status_code == 503 and refused.headers["Retry-After"]
    assert refused.json_body["error"] == "KeysUnavailable"
    assert "nothing was done" in refused.json_body["detail"]
    assert master_keys_of(superuser, tenant) == []
    root = superuser()
    try:
        [[rows]] = root.run("SELECT count(*) FROM user_totp t JOIN users u ON u.id = t.user_id "
                            "WHERE u.tenant_id = :t", t=tenant)
    finally:
        root.close()
    assert rows == 0


@pytest.mark.parametrize("name", ["aws-kms", "scaleway-key-manager"])
def test_moving_off_the_key_file_to_a_provider(
        database: Database, stack: LocalStack, as_owner: Connect, superuser: Connect,
        name: str, kms_key: str, key_manager: KeyManagerStandIn, scw_key: str) -> None:
    """Old rows keep opening through the file while new keys go to the
    provider; rotate_keys then re-wraps the file's rows under the provider,
    after which the provider alone opens everything."""
    local = LocalKeyFile(stack.master_key_file)
    old_tenant = create_tenant(f"Before {uuid.uuid4().hex[:6]}", database.unit_of_work)
    old_row = store(database, FieldCipher(local), old_tenant)
    env = provider_env(name, kms_key, key_manager, scw_key)
    env["EINVOICE_MASTER_KEY_FILE"] = str(stack.master_key_file)  # kept for the move
    with deployed_with(env):
        moving = runtime.key_wrapper()
        assert read(database, FieldCipher(moving), old_tenant, old_row) == IBAN
        new_tenant = create_tenant(f"After {uuid.uuid4().hex[:6]}", database.unit_of_work)
        new_row = store(database, FieldCipher(moving), new_tenant)
        assert master_keys_of(superuser, str(new_tenant)) == [moving.current_key_id]
        owner = as_owner()
        try:
            result = rewrap(owner, moving)
        finally:
            owner.close()
        assert not [f for f in result.failed if str(old_tenant) in f or str(new_tenant) in f]
        assert result.new_master_key == moving.current_key_id
    assert master_keys_of(superuser, str(old_tenant)) == [moving.current_key_id]
    provider_only = providers(AwsKmsKeys(kms_client(kms_key), kms_key), key_manager,
                              scw_key)[name]
    for tenant, row in ((old_tenant, old_row), (new_tenant, new_row)):
        assert read(database, FieldCipher(provider_only), tenant, row) == IBAN


def store(database: Database, cipher: FieldCipher, tenant: uuid.UUID) -> str:
    """A sealed value as a column would hold it (kept here: its place is all
    that binds it); the data key row is what the database keeps."""
    row = str(uuid.uuid4())
    with database.transaction(tenant) as conn:
        sealed = cipher.seal(PostgresDataKeys(conn, tenant),
                             FieldPlace(tenant, "test_bank_accounts", "iban", row), IBAN)
    _SEALED[row] = sealed
    return row


def read(database: Database, cipher: FieldCipher, tenant: uuid.UUID, row: str) -> str:
    with database.transaction(tenant) as conn:
        return cipher.open(PostgresDataKeys(conn, tenant),
                           FieldPlace(tenant, "test_bank_accounts", "iban", row), _SEALED[row])


_SEALED: dict[str, bytes] = {}


def test_the_rotation_command_moves_the_files_keys_to_the_provider(
        database: Database, stack: LocalStack, app_settings: Settings,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        superuser: Connect, key_manager: KeyManagerStandIn, scw_key: str) -> None:
    tenant = create_tenant(f"Command {uuid.uuid4().hex[:6]}", database.unit_of_work)
    store(database, FieldCipher(LocalKeyFile(stack.master_key_file)), tenant)
    env = provider_env("scaleway-key-manager", "", key_manager, scw_key)
    env["EINVOICE_MASTER_KEY_FILE"] = str(stack.master_key_file)
    env["EINVOICE_DB_OWNER_PASSWORD"] = app_settings.db_owner_password.get_secret_value()
    with deployed_with(env):
        status = rotate_keys.main()
    out, err = capsys.readouterr()
    current = f"scaleway:fr-par:{scw_key}"
    assert status in (0, 1) and f"master key {current} is current" in out
    assert str(tenant) not in err  # rows it could not re-wrap are others' (another provider's)
    assert master_keys_of(superuser, str(tenant)) == [current]


def test_the_rotation_command_stops_at_a_provider_outage(
        database: Database, stack: LocalStack, app_settings: Settings,
        capsys: pytest.CaptureFixture[str], superuser: Connect,
        key_manager: KeyManagerStandIn, scw_key: str) -> None:
    tenant = create_tenant(f"Outage {uuid.uuid4().hex[:6]}", database.unit_of_work)
    store(database, FieldCipher(LocalKeyFile(stack.master_key_file)), tenant)
    before = master_keys_of(superuser, str(tenant))
    env = provider_env("scaleway-key-manager", "", key_manager, scw_key)
    env["EINVOICE_SCW_API_URL"] = dead_endpoint()
    env["EINVOICE_MASTER_KEY_FILE"] = str(stack.master_key_file)
    env["EINVOICE_DB_OWNER_PASSWORD"] = app_settings.db_owner_password.get_secret_value()
    with deployed_with(env):
        assert rotate_keys.main() == 3
    assert "stopped: Key Manager encrypt: unreachable" in capsys.readouterr().err
    assert master_keys_of(superuser, str(tenant)) == before
