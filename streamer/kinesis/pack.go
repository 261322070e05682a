package kinesis

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
)

// Packing puts a partition key's consecutive records into one Kinesis
// record when Append has several of them to store: a backlog (a publisher
// restarted after an outage, a burst of writes to one tenant) is stored in
// one PutRecords round instead of one round per record of the busiest key,
// and a consumer receives each key's backlog in one batch, which an applier
// applies as one merged change (tcs.CoalesceEvents) instead of one per batch
// it happened to be split across.
//
// A packed record is packMagic, then each record's data as a uvarint length
// and the bytes, then the CRC-32C of everything before it (4 bytes, big
// endian). Consume unpacks it into the records it holds, in order; data
// that does not parse as one exactly, checksum included, is an ordinary
// record. packMagic starts with a zero byte, which no protobuf message (what
// TCS appends) starts with.
var packMagic = []byte("\x00tcs-pack1")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// packedSize is the size of the packed record holding data records of the
// given total size and count, before the partition key.
func packedSize(dataBytes, n int) int {
	return len(packMagic) + dataBytes + n*binary.MaxVarintLen32 + crc32.Size
}

// pack returns the packed record holding datas, in order.
func pack(datas [][]byte) []byte {
	n := len(packMagic) + crc32.Size
	for _, d := range datas {
		n += binary.MaxVarintLen32 + len(d)
	}
	b := make([]byte, 0, n)
	b = append(b, packMagic...)
	for _, d := range datas {
		b = binary.AppendUvarint(b, uint64(len(d)))
		b = append(b, d...)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// unpack returns the records a packed record holds, or ok false if data is
// not one (an ordinary record). The records alias data.
func unpack(data []byte) (datas [][]byte, ok bool) {
	if !bytes.HasPrefix(data, packMagic) || len(data) < len(packMagic)+crc32.Size {
		return nil, false
	}
	body, sum := data[:len(data)-crc32.Size], data[len(data)-crc32.Size:]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(sum) {
		return nil, false
	}
	rest := body[len(packMagic):]
	for len(rest) > 0 {
		l, n := binary.Uvarint(rest)
		if n <= 0 || l > uint64(len(rest)-n) {
			return nil, false
		}
		datas = append(datas, rest[n:n+int(l)])
		rest = rest[n+int(l):]
	}
	if len(datas) == 0 {
		return nil, false
	}
	return datas, true
}
