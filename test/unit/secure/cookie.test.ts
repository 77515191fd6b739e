import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { ManualClock } from '../../../src/core/clock.js';
import { CookieJar, encodeCookieReply, openCookieReply } from '../../../src/secure/cookie.js';
import { HS_COOKIE, HS_INITIATION, INIT_MSG, MIN_COOKIE_REPLY, MIN_INITIATION, decodeHandshake, encodeHandshake, mac1Of, serverPublicKeys, setMac2 } from '../../../src/secure/packet-wire.js';

const keys = serverPublicKeys(randomBytes(32));
const initiation = (): Buffer => encodeHandshake(keys, HS_INITIATION, randomBytes(INIT_MSG), MIN_INITIATION + 40);

describe('cookies', () => {
  it('mac2 made with the cookie for a source checks for that source only', () => {
    const jar = new CookieJar(new ManualClock());
    const d = initiation();
    assert.equal(jar.checkMac2(d, '198.51.100.7:4000'), false, 'no cookie yet: mac2 is random');
    setMac2(d, jar.cookieFor('198.51.100.7:4000'));
    assert.equal(jar.checkMac2(d, '198.51.100.7:4000'), true);
    assert.equal(jar.checkMac2(d, '198.51.100.7:4001'), false, 'another port');
    assert.equal(jar.checkMac2(d, '203.0.113.9:4000'), false, 'another address');
  });

  it('the secret rotates: a cookie checks for one more period, then no longer', () => {
    const clock = new ManualClock();
    const jar = new CookieJar(clock, 1000);
    const d = initiation();
    setMac2(d, jar.cookieFor('a'));
    clock.advance(1000);
    assert.equal(jar.checkMac2(d, 'a'), true, 'previous secret');
    assert.notDeepEqual(jar.cookieFor('a'), undefined);
    clock.advance(1000);
    assert.equal(jar.checkMac2(d, 'a'), false, 'two rotations later');
  });

  it('a long quiet spell drops the previous secret too', () => {
    const clock = new ManualClock();
    const jar = new CookieJar(clock, 1000);
    const d = initiation();
    setMac2(d, jar.cookieFor('a'));
    clock.advance(5000);
    assert.equal(jar.checkMac2(d, 'a'), false);
  });

  it('the reply opens only with the mac1 of the initiation it answers, and is never bigger than that initiation', () => {
    const d = initiation();
    const cookie = randomBytes(16);
    for (let i = 0; i < 50; i++) {
      const reply = encodeCookieReply(keys, cookie, mac1Of(d), d.length, 4096);
      assert.ok(reply.length >= MIN_COOKIE_REPLY && reply.length <= d.length, `reply of ${reply.length} for ${d.length}`);
      const hd = decodeHandshake(keys, reply, false);
      assert.equal(hd?.type, HS_COOKIE);
      assert.deepEqual(openCookieReply(keys, hd.body, mac1Of(d)), cookie);
      assert.equal(openCookieReply(keys, hd.body, randomBytes(16)), undefined);
      assert.equal(openCookieReply(keys, hd.body.subarray(0, 20), mac1Of(d)), undefined);
    }
    const tight = encodeCookieReply(keys, cookie, mac1Of(d), MIN_COOKIE_REPLY, 4096);
    assert.equal(tight.length, MIN_COOKIE_REPLY);
  });
});
