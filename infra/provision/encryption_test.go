package provision

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	awssns "github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/smithy-go"
)

// fakeKinesis is a stream as Kinesis reports it: statuses are handed out in
// order by DescribeStreamSummary (the last one repeats), and
// StartStreamEncryption answers startErr or, without one, turns the stream
// to KMS after one UPDATING describe.
type fakeKinesis struct {
	statuses   []ktypes.StreamStatus
	encryption ktypes.EncryptionType
	key        string
	startErr   error
	started    []*kinesis.StartStreamEncryptionInput
	describes  int
}

func (f *fakeKinesis) DescribeStreamSummary(_ context.Context, in *kinesis.DescribeStreamSummaryInput, _ ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error) {
	f.describes++
	status := f.statuses[0]
	if len(f.statuses) > 1 {
		f.statuses = f.statuses[1:]
	}
	return &kinesis.DescribeStreamSummaryOutput{StreamDescriptionSummary: &ktypes.StreamDescriptionSummary{
		StreamName: in.StreamName, StreamStatus: status, EncryptionType: f.encryption, KeyId: aws.String(f.key),
	}}, nil
}

func (f *fakeKinesis) StartStreamEncryption(_ context.Context, in *kinesis.StartStreamEncryptionInput, _ ...func(*kinesis.Options)) (*kinesis.StartStreamEncryptionOutput, error) {
	f.started = append(f.started, in)
	if f.startErr != nil {
		return nil, f.startErr
	}
	if f.statuses[0] != ktypes.StreamStatusActive {
		return nil, &ktypes.ResourceInUseException{Message: aws.String("stream not ACTIVE")}
	}
	f.encryption, f.key = in.EncryptionType, aws.ToString(in.KeyId)
	f.statuses = []ktypes.StreamStatus{ktypes.StreamStatusUpdating, ktypes.StreamStatusActive}
	return &kinesis.StartStreamEncryptionOutput{}, nil
}

func TestEncryptStream(t *testing.T) {
	t.Parallel()
	active := []ktypes.StreamStatus{ktypes.StreamStatusActive}
	for _, tc := range []struct {
		name string
		f    *fakeKinesis
		// wantStart: StartStreamEncryption called; wantEnc: the stream ends
		// up KMS-encrypted; wantOut: in the output; wantErr: in the error.
		wantStart, wantEnc bool
		wantOut, wantErr   string
	}{
		{name: "unencrypted: encrypted with the AWS managed key",
			f:         &fakeKinesis{statuses: active, encryption: ktypes.EncryptionTypeNone},
			wantStart: true, wantEnc: true},
		{name: "still updating after create: waits for ACTIVE first",
			f:         &fakeKinesis{statuses: []ktypes.StreamStatus{ktypes.StreamStatusCreating, ktypes.StreamStatusUpdating, ktypes.StreamStatusActive}, encryption: ktypes.EncryptionTypeNone},
			wantStart: true, wantEnc: true},
		{name: "already encrypted: left alone",
			f:       &fakeKinesis{statuses: active, encryption: ktypes.EncryptionTypeKms, key: StreamKMSKey},
			wantEnc: true},
		{name: "encrypted with its owner's key: left alone, noted",
			f:       &fakeKinesis{statuses: active, encryption: ktypes.EncryptionTypeKms, key: "arn:aws:kms:us-east-1:1:key/x"},
			wantEnc: true, wantOut: "note: s is encrypted with KMS key arn:aws:kms:us-east-1:1:key/x"},
		{name: "emulator without the operation: warning",
			f:         &fakeKinesis{statuses: active, startErr: &smithy.GenericAPIError{Code: "UnknownOperationException"}},
			wantStart: true, wantOut: "warning: s: the endpoint does not support stream encryption"},
		{name: "refused: error",
			f:         &fakeKinesis{statuses: active, startErr: &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "no kms"}},
			wantStart: true, wantErr: "kinesis start stream encryption s"},
		{name: "being deleted: error",
			f:       &fakeKinesis{statuses: []ktypes.StreamStatus{ktypes.StreamStatusDeleting}},
			wantErr: "being deleted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			err := encryptStream(context.Background(), tc.f, "s", &out)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("encryptStream: %v, want error %q", err, tc.wantErr)
			}
			if got := len(tc.f.started) > 0; got != tc.wantStart {
				t.Errorf("StartStreamEncryption called %v, want %v", got, tc.wantStart)
			}
			for _, in := range tc.f.started {
				if in.EncryptionType != ktypes.EncryptionTypeKms || aws.ToString(in.KeyId) != StreamKMSKey || aws.ToString(in.StreamName) != "s" {
					t.Errorf("StartStreamEncryption(%s, %s, %s), want (s, KMS, %s)", aws.ToString(in.StreamName), in.EncryptionType, aws.ToString(in.KeyId), StreamKMSKey)
				}
			}
			if got := tc.f.encryption == ktypes.EncryptionTypeKms; got != tc.wantEnc && err == nil {
				t.Errorf("encrypted %v, want %v", got, tc.wantEnc)
			}
			if !strings.Contains(out.String(), tc.wantOut) || tc.wantOut == "" && out.Len() > 0 {
				t.Errorf("output %q, want %q", out.String(), tc.wantOut)
			}
		})
	}
}

// fakeSNS is a topic's attributes; keep false drops what SetTopicAttributes
// is given (an emulator that accepts and ignores it).
type fakeSNS struct {
	attrs  map[string]string
	keep   bool
	setErr error
	sets   int
}

func (f *fakeSNS) GetTopicAttributes(context.Context, *awssns.GetTopicAttributesInput, ...func(*awssns.Options)) (*awssns.GetTopicAttributesOutput, error) {
	return &awssns.GetTopicAttributesOutput{Attributes: f.attrs}, nil
}

func (f *fakeSNS) SetTopicAttributes(_ context.Context, in *awssns.SetTopicAttributesInput, _ ...func(*awssns.Options)) (*awssns.SetTopicAttributesOutput, error) {
	f.sets++
	if f.setErr != nil {
		return nil, f.setErr
	}
	if f.keep {
		f.attrs[aws.ToString(in.AttributeName)] = aws.ToString(in.AttributeValue)
	}
	return &awssns.SetTopicAttributesOutput{}, nil
}

func TestEncryptTopic(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name             string
		f                *fakeSNS
		wantSet          bool
		wantKey          string
		wantOut, wantErr string
	}{
		{name: "unencrypted: gets the AWS managed key",
			f: &fakeSNS{attrs: map[string]string{}, keep: true}, wantSet: true, wantKey: TopicKMSKey},
		{name: "already encrypted: left alone",
			f: &fakeSNS{attrs: map[string]string{"KmsMasterKeyId": TopicKMSKey}}, wantKey: TopicKMSKey},
		{name: "encrypted with its owner's key: left alone, noted",
			f: &fakeSNS{attrs: map[string]string{"KmsMasterKeyId": "alias/mine"}}, wantKey: "alias/mine", wantOut: "note: arn:t is encrypted with KMS key alias/mine"},
		{name: "endpoint ignores the key: warning",
			f: &fakeSNS{attrs: map[string]string{}}, wantSet: true, wantOut: `warning: arn:t: the endpoint accepted the KMS key but reports ""`},
		{name: "endpoint without the operation: warning",
			f: &fakeSNS{attrs: map[string]string{}, setErr: &smithy.GenericAPIError{Code: "InvalidAction"}}, wantSet: true, wantOut: "warning: arn:t: the endpoint does not support topic encryption"},
		{name: "refused: error",
			f: &fakeSNS{attrs: map[string]string{}, setErr: &smithy.GenericAPIError{Code: "AuthorizationError"}}, wantSet: true, wantErr: "sns set KmsMasterKeyId of arn:t"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			err := encryptTopic(context.Background(), tc.f, "arn:t", &out)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("encryptTopic: %v, want error %q", err, tc.wantErr)
			}
			if got := tc.f.sets > 0; got != tc.wantSet {
				t.Errorf("SetTopicAttributes called %v, want %v", got, tc.wantSet)
			}
			if got := tc.f.attrs["KmsMasterKeyId"]; got != tc.wantKey && err == nil {
				t.Errorf("KmsMasterKeyId %q, want %q", got, tc.wantKey)
			}
			if !strings.Contains(out.String(), tc.wantOut) || tc.wantOut == "" && out.Len() > 0 {
				t.Errorf("output %q, want %q", out.String(), tc.wantOut)
			}
		})
	}
}

func TestUnsupported(t *testing.T) {
	t.Parallel()
	if unsupported(nil) || unsupported(errors.New("UnknownOperationException")) || unsupported(&smithy.GenericAPIError{Code: "ValidationException"}) {
		t.Error("unsupported() true for a nil, plain or other API error")
	}
	if !unsupported(&smithy.GenericAPIError{Code: "UnknownOperationException"}) {
		t.Error("unsupported() false for UnknownOperationException")
	}
}
