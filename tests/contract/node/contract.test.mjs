// Contract suite: a Node client generated at run time from protos/ (keepCase,
// enums as strings) against the real Python services. Run: node --test
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";

import { TOKENS, caller, grpc, loadContracts, richError, startServices } from "./harness.mjs";

const contracts = loadContracts();
const DAY = 86400;
let services;
let provider;
let portal;
const callers = [];

function open(Service, address, token) {
  const call = caller(Service, address, token);
  callers.push(call);
  return call;
}

function terms(productId, overrides = {}) {
  return {
    product_id: productId,
    kind: "CODE_KIND_LICENSE",
    coverage: "COVERAGE_UPDATES_AND_PROTECTION",
    duration: { seconds: String(365 * DAY) },
    grace_period: { seconds: String(14 * DAY) },
    max_devices: 2,
    slot_kind: "SLOT_KIND_PER_DEVICE",
    purchase_channel: "PURCHASE_CHANNEL_ACCOUNT_PORTAL",
    provider_name: "node-contract",
    ...overrides,
  };
}

async function newProduct() {
  const productId = `node-${randomUUID().slice(0, 8)}`;
  const reply = await provider("CreateProduct", {
    product: { product_id: productId, display_name: "Node contract product" },
  });
  assert.equal(reply.product.product_id, productId);
  return productId;
}

async function rejects(promise) {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail("the call succeeded; a refusal was expected");
}

before(async () => {
  services = await startServices();
  provider = open(contracts.LicenseService, services.license.address, TOKENS.provider);
  portal = open(contracts.DeviceService, services.device.address, TOKENS.portal);
});

after(async () => {
  for (const call of callers) call.close();
  if (services) await services.stop();
});

describe("keyslot contract (Node client)", () => {
  test("full send flow: issue -> account -> connect -> send -> complete (D1, D4, D7)", async () => {
    const productId = await newProduct();
    const issued = await provider("IssueCodes", {
      terms: terms(productId),
      count: 1,
      request_id: randomUUID(),
    });
    assert.equal(issued.codes.length, 1);
    const code = issued.codes[0].code;
    assert.match(code, /^[A-Z0-9]{5}(-[A-Z0-9]{5}){3}$/);
    assert.equal(issued.codes[0].status, "CODE_STATUS_ACTIVE"); // enums arrive as strings

    const created = await portal("CreateAccount", {
      account: { display_name: "Node family", kind: "ACCOUNT_KIND_PERSONAL" },
    });
    const accountId = created.account.account_id;
    assert.ok(accountId);
    assert.ok(created.account_credential);
    const account = open(contracts.DeviceService, services.device.address, created.account_credential);
    await account("AddSubscription", { account_id: accountId, code });

    const connection = await account("CreateConnectionCode", { account_id: accountId });
    assert.ok(connection.connection_code);
    // The app has no credential yet: the connection code is its bearer token.
    const app = open(contracts.DeviceService, services.device.address, connection.connection_code);
    const connected = await app("ConnectDevice", {
      connection_code: connection.connection_code,
      platform: "PLATFORM_LINUX",
      app_version: "21.3",
      region: "FI",
      display_name: "node laptop",
    });
    const deviceId = connected.device.device_id;
    assert.ok(deviceId);
    assert.ok(connected.device_credential);

    const sent = await account("SendSubscription", {
      account_id: accountId,
      code,
      device_ids: [deviceId],
      request_id: randomUUID(),
    });
    assert.equal(sent.results.length, 1);
    assert.equal(sent.results[0].outcome, "delivery", JSON.stringify(sent.results[0]));
    const delivery = sent.results[0].delivery;
    assert.equal(delivery.state, "DELIVERY_STATE_PENDING");

    const device = open(contracts.DeviceService, services.device.address, connected.device_credential);
    const completed = await device("CompleteDelivery", {
      delivery_id: delivery.delivery_id,
      request_id: randomUUID(),
    });
    assert.equal(completed.delivery.state, "DELIVERY_STATE_DELIVERED");
    assert.equal(completed.code.code, code);
    assert.equal(completed.code.phase, "PHASE_ACTIVE"); // L1: the term started now

    const checkIn = await device("CheckIn", {});
    assert.equal(checkIn.device.current_code, code);
  });

  test("a refusal carries one ErrorInfo with its reason in grpc-status-details-bin (H5)", async () => {
    const productId = await newProduct();
    const err = await rejects(
      provider("CreateProduct", { product: { product_id: productId, display_name: "again" } }),
    );
    assert.equal(err.code, grpc.status.ALREADY_EXISTS);
    const rich = richError(contracts, err);
    assert.equal(rich.infos, 1);
    assert.equal(rich.reason, "PRODUCT_EXISTS");
    assert.equal(rich.domain, "license.keyslot");

    const missing = await rejects(provider("GetCode", { code: "AAAAA-BBBBB-CCCCC-DDDDD" }));
    assert.equal(missing.code, grpc.status.NOT_FOUND);
    assert.equal(richError(contracts, missing).reason, "CODE_NOT_FOUND");

    const bad = await rejects(provider("GetCode", { code: "not a code!" }));
    assert.equal(bad.code, grpc.status.INVALID_ARGUMENT);
    const badRich = richError(contracts, bad);
    assert.equal(badRich.reason, "INVALID_ARGUMENT");
    assert.deepEqual(badRich.violations, ["code"]);
  });

  test("a call without a valid token is UNAUTHENTICATED (S1)", async () => {
    for (const token of [null, "not-a-known-token-at-all"]) {
      const anon = open(contracts.LicenseService, services.license.address, token);
      const err = await rejects(anon("ListProducts", {}));
      assert.equal(err.code, grpc.status.UNAUTHENTICATED);
      assert.equal(richError(contracts, err).reason, "UNAUTHENTICATED");
      const anonDevice = open(contracts.DeviceService, services.device.address, token);
      const err2 = await rejects(anonDevice("GetAccount", { account_id: "acc_x" }));
      assert.equal(err2.code, grpc.status.UNAUTHENTICATED);
      assert.equal(richError(contracts, err2).domain, "device.keyslot");
    }
  });

  test("ListCodes pages to the end with a small page_size", async () => {
    const productId = await newProduct();
    const issued = await provider("IssueCodes", {
      terms: terms(productId),
      count: 7,
      request_id: randomUUID(),
    });
    const expected = issued.codes.map((c) => c.code);
    const seen = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await provider("ListCodes", {
        product_id: productId,
        page_size: 3,
        page_token: pageToken,
      });
      assert.ok(page.codes.length <= 3);
      seen.push(...page.codes.map((c) => c.code));
      pageToken = page.next_page_token;
      pages += 1;
      assert.ok(pages <= 10, "pagination does not end");
    } while (pageToken);
    assert.equal(pages, 3);
    assert.deepEqual([...seen].sort(), [...expected].sort());
    assert.equal(new Set(seen).size, seen.length, "no code twice");
  });
});
