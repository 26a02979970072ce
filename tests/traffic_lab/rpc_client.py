"""The RPC half of remote administration, with impacket (Debian's python3-impacket, run by /usr/bin/python3):
ask the endpoint mapper (tcp/135) where an interface lives, connect to that dynamic port and bind to it,
as impacket's own tools and Windows clients do.

    /usr/bin/python3 tests/traffic_lab/rpc_client.py HOST INTERFACE...   (INTERFACE: winreg, lsarpc, srvsvc)
"""

import sys

from impacket.dcerpc.v5 import epm, lsat, rrp, srvs, transport

INTERFACES = {"winreg": rrp.MSRPC_UUID_RRP, "lsarpc": lsat.MSRPC_UUID_LSAT, "srvsvc": srvs.MSRPC_UUID_SRVS}


def main() -> int:
    host, names = sys.argv[1], sys.argv[2:]
    for name in names:
        binding = epm.hept_map(host, INTERFACES[name], protocol="ncacn_ip_tcp")
        rpc = transport.DCERPCTransportFactory(binding).get_dce_rpc()
        rpc.connect()
        rpc.bind(INTERFACES[name])
        rpc.disconnect()
        print(name, binding)
    return 0


if __name__ == "__main__":
    sys.exit(main())
