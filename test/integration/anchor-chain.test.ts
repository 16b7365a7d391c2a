import { IotaClient } from '@iota/iota-sdk/client';
import { IotaAnchorChain, iotaClientFor, timeoutTransport } from '../../nodes/ledger/anchor-chain.js';
import { IotaStandIn } from '../../nodes/ledger/iota-standin.js';
import { anchorChainCompliance } from '../compliance/anchor-chain.js';
import { DEPLOYMENT } from '../helpers/fake-iota.js';

// The IOTA adapter against the stand-in node, in-process (the SDK's transport scripted) and over
// HTTP on 127.0.0.1 (the SDK's own HTTP transport). Never against a real IOTA node here.
anchorChainCompliance('IOTA client, stand-in node in-process', async () => {
  const node = new IotaStandIn(DEPLOYMENT.packageId);
  return {
    chain: new IotaAnchorChain(new IotaClient({ transport: timeoutTransport(node.transport(), 1500) })),
    deployment: DEPLOYMENT,
    fund: (owner) => void node.fund(owner),
    faults: node.faults,
    cleanup: async () => undefined,
  };
});

anchorChainCompliance('IOTA client, stand-in node over HTTP on 127.0.0.1', async () => {
  const node = new IotaStandIn(DEPLOYMENT.packageId);
  const server = await node.listen();
  return {
    chain: new IotaAnchorChain(iotaClientFor(server.url, 1500)),
    deployment: DEPLOYMENT,
    fund: (owner) => void node.fund(owner),
    faults: node.faults,
    cleanup: () => server.close(),
  };
});
