"""orgd from Python: create an organization, add a member, attach a space,
upsert content and read the organization's statistics.

Generate the stubs first (grpcio-tools), from the repository root:

    python -m grpc_tools.protoc -I proto --python_out=examples/python/gen \
        --grpc_python_out=examples/python/gen \
        proto/orgd/v1/*.proto proto/google/api/*.proto proto/google/rpc/*.proto

then run, with a superadmin's token (`orgd token --email ...`):

    ORGD_ADDR=127.0.0.1:50051 ORGD_TOKEN=... python examples/python/client.py

Exits non-zero, printing the gRPC status and its ErrorInfo reason, when a
call fails.
"""

import os
import sys
import uuid

sys.path.insert(
    0, os.environ.get("ORGD_PY_GEN") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen")
)

import grpc  # noqa: E402

from orgd.v1 import organization_service_pb2 as orgs  # noqa: E402
from orgd.v1 import organization_service_pb2_grpc as orgs_grpc  # noqa: E402
from orgd.v1 import aggregation_service_pb2 as agg  # noqa: E402
from orgd.v1 import aggregation_service_pb2_grpc as agg_grpc  # noqa: E402
from orgd.v1 import resources_pb2 as res  # noqa: E402
from orgd.v1 import space_service_pb2 as spaces  # noqa: E402
from orgd.v1 import space_service_pb2_grpc as spaces_grpc  # noqa: E402


def main() -> int:
    addr = os.environ.get("ORGD_ADDR", "127.0.0.1:50051")
    token = os.environ["ORGD_TOKEN"]
    slug = os.environ.get("ORGD_SLUG", "python-" + uuid.uuid4().hex[:8])
    meta = [("authorization", "Bearer " + token)]

    with grpc.insecure_channel(addr) as channel:
        org_api = orgs_grpc.OrganizationServiceStub(channel)
        space_api = spaces_grpc.SpaceServiceStub(channel)
        agg_api = agg_grpc.AggregationServiceStub(channel)
        try:
            org = org_api.CreateOrganization(
                orgs.CreateOrganizationRequest(name="Python Corp", slug=slug), metadata=meta
            ).organization
            print(f"created organization {org.slug} ({org.id})")

            member = org_api.AddUser(
                orgs.AddUserRequest(slug=slug, user_email="ann@python.example", role="member"),
                metadata=meta,
            ).member
            print(f"added {member.email} as {member.role}")

            space = space_api.CreateSpace(
                spaces.CreateSpaceRequest(name=f"Python space {slug}"), metadata=meta
            ).space
            org_api.AddSpace(orgs.AddSpaceRequest(slug=slug, space_id=space.id), metadata=meta)
            print(f"attached space {space.slug}")

            items = [
                res.Product(id=str(uuid.uuid4()), name=f"product {i}", product_type="table")
                for i in range(3)
            ]
            upserted = space_api.BatchUpsertProducts(
                spaces.BatchUpsertProductsRequest(space_id=space.id, items=items), metadata=meta
            ).upserted
            print(f"upserted {upserted} products")

            stats = agg_api.GetStats(agg.GetStatsRequest(slug=slug), metadata=meta)
            print(
                f"stats: spaces={stats.total_spaces} products={stats.total_products} "
                f"users={stats.total_users}"
            )
        except grpc.RpcError as e:
            print(f"call failed: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
