// Reference CDR encoder for test/ros-messages.test.ts, built on eProsima Fast-CDR 1.x (the
// serializer under rmw_fastrtps). Usage: encode <pkg/msg/Type> [--dirty-padding]
// Prints the serialized sample of that type as hex. Each sample mirrors SAMPLES in the test,
// field by field in declaration order, nested messages written out by hand: change both together.
#include <fastcdr/Cdr.h>
#include <fastcdr/FastBuffer.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <functional>
#include <map>
#include <string>
#include <vector>

using eprosima::fastcdr::Cdr;
using eprosima::fastcdr::FastBuffer;

namespace {

void header(Cdr& c, const std::string& frame_id)
{
    c << int32_t(1700000123) << uint32_t(456789012) << frame_id;
}

void sequence_length(Cdr& c, size_t n)
{
    c << uint32_t(n);
}

void vector3(Cdr& c, double x, double y, double z)
{
    c << x << y << z;
}

void quaternion(Cdr& c, double x, double y, double z, double w)
{
    c << x << y << z << w;
}

void covariance(Cdr& c, double step, int every)
{
    double values[36];
    for (int i = 0; i < 36; i++)
    {
        values[i] = i % every == 0 ? i * step : 0.0;
    }
    c.serializeArray(values, 36);
}

void image(Cdr& c)
{
    header(c, "camera");
    c << uint32_t(2) << uint32_t(3) << std::string("mono8") << uint8_t(0) << uint32_t(3);
    c << std::vector<uint8_t>{0, 1, 2, 250, 254, 255};
}

void compressed_image(Cdr& c)
{
    header(c, "cam_optical");
    c << std::string("png");
    c << std::vector<uint8_t>{0x89, 0x50, 0x4e, 0x47, 0x0d};
}

void laser_scan(Cdr& c)
{
    header(c, "laser");
    c << -1.5707964f << 1.5707964f << 0.0174533f << 0.0001f << 0.1f << 0.12f << 3.5f;
    c << std::vector<float>{1.0f, 2.5f, std::numeric_limits<float>::infinity(), 0.3333f};
    c << std::vector<float>{};
}

void odometry(Cdr& c)
{
    header(c, "odom");
    c << std::string("base_link");
    vector3(c, 1.5, -2.25, 0.0);
    quaternion(c, 0.0, 0.0, 0.38268343236, 0.92387953251);
    covariance(c, 0.01, 1);
    vector3(c, 0.5, 0.0, 0.0);
    vector3(c, 0.0, 0.0, -0.1);
    covariance(c, 0.05, 7);
}

void occupancy_grid(Cdr& c)
{
    header(c, "map");
    c << int32_t(1700000000) << uint32_t(5);
    c << 0.05f << uint32_t(4) << uint32_t(3);
    vector3(c, -10.5, -7.25, 0.0);
    quaternion(c, 0.0, 0.0, 0.0, 1.0);
    c << std::vector<int8_t>{-1, -1, 0, 0, 100, 50, -1, 0, 0, 100, 100, -1};
}

void key_value(Cdr& c, const std::string& key, const std::string& value)
{
    c << key << value;
}

void diagnostic_array(Cdr& c)
{
    header(c, "");
    sequence_length(c, 2);
    c << uint8_t(2) << std::string("robomesh/split") << std::string("peer lost") << std::string("jetson-7");
    sequence_length(c, 2);
    key_value(c, "rtt_ms", "12.5");
    key_value(c, "temp", "21 \xc2\xb0" "C");
    c << uint8_t(0) << std::string("ok") << std::string("") << std::string("x");
    sequence_length(c, 0);
}

void inference_result(Cdr& c)
{
    header(c, "camera");
    c << std::string("sha256:9f86d081884c7d65") << std::string("t-42") << std::string("12D3KooWRzCVDwH");
    c << std::string("split") << std::string("layer3") << std::string("fp16");
    c << 12.625 << 11.5;
    c << std::vector<std::string>{"logits", "boxes", "x"};
    c << std::vector<uint32_t>{1000, 4, 7};
    c << std::vector<float>{0.1f, 0.02f, -3.5f, 4.25f, 0.5f, 0.3f, 0.0f, 1.0f, -0.125f, 0.7f, -1.0f, 1.0f};
    std::vector<uint8_t> digest(32);
    for (size_t i = 0; i < digest.size(); i++)
    {
        digest[i] = uint8_t((i * 7 + 1) & 0xff);
    }
    c << digest;
}

void split_decision(Cdr& c)
{
    header(c, "map");
    c << std::string("sha256:9f86") << std::string("offload") << std::string("") << std::string("int8");
    c << std::string("12D3KooWPeer") << 8.75 << 9.125;
    c << std::vector<std::string>{"12D3KooWA", "12D3KooWB"};
    c << std::vector<std::string>{"TIMEOUT", "REFUSED"};
}

void peer_status(Cdr& c)
{
    header(c, "map");
    c << std::string("12D3KooWPeer1") << std::string("rover-1") << true << 125000000.5 << 3.5;
    c << uint32_t(2) << 0.75 << int32_t(-3) << false;
}

void ledger_event(Cdr& c)
{
    header(c, "map");
    c << std::string("bafyreib") << std::string("12D3KooWAuthor");
    c << uint64_t(42) << uint64_t(9007199254740993ULL);
    c << std::string("result") << std::string("t-42") << std::string("ok") << uint32_t(17) << std::string("e3b0c442");
}

const std::map<std::string, std::function<void(Cdr&)>> kSamples = {
    {"sensor_msgs/msg/Image", image},
    {"sensor_msgs/msg/CompressedImage", compressed_image},
    {"sensor_msgs/msg/LaserScan", laser_scan},
    {"nav_msgs/msg/Odometry", odometry},
    {"nav_msgs/msg/OccupancyGrid", occupancy_grid},
    {"diagnostic_msgs/msg/DiagnosticArray", diagnostic_array},
    {"robomesh_msgs/msg/InferenceResult", inference_result},
    {"robomesh_msgs/msg/SplitDecision", split_decision},
    {"robomesh_msgs/msg/PeerStatus", peer_status},
    {"robomesh_msgs/msg/LedgerEvent", ledger_event},
};

} // namespace

int main(int argc, char** argv)
{
    if (argc < 2 || kSamples.count(argv[1]) == 0)
    {
        std::fprintf(stderr, "usage: encode <pkg/msg/Type> [--dirty-padding]\n");
        return 2;
    }
    // Fast-CDR skips padding bytes without writing them: they keep whatever the buffer held.
    const bool dirty = argc > 2 && std::strcmp(argv[2], "--dirty-padding") == 0;
    std::vector<char> raw(1 << 16, dirty ? char(0xaa) : char(0));
    FastBuffer buffer(raw.data(), raw.size());
    // Little-endian on every host, as our encoder writes.
    Cdr cdr(buffer, Cdr::LITTLE_ENDIANNESS, Cdr::DDS_CDR);
    cdr.serialize_encapsulation();
    kSamples.at(argv[1])(cdr);
    for (size_t i = 0; i < cdr.getSerializedDataLength(); i++)
    {
        std::printf("%02x", static_cast<unsigned char>(raw[i]));
    }
    std::printf("\n");
    return 0;
}
