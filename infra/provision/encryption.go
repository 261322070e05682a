package provision

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	ktypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	awssns "github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/smithy-go"
)

// The KMS keys Apply encrypts the change stream and the invalidation topics
// with: the AWS managed keys of Kinesis and SNS, as the CloudFormation
// templates do (home.yaml ChangeStream StreamEncryption, region.yaml
// InvalidationTopic KmsMasterKeyId); the drift test checks the two agree.
// The IAM policies allow the roles that write and read them to use these
// keys through the service only (kms:ViaService).
const (
	StreamKMSKey = "alias/aws/kinesis"
	TopicKMSKey  = "alias/aws/sns"
)

// topicKMSAttribute is the SNS topic attribute naming its KMS key.
const topicKMSAttribute = "KmsMasterKeyId"

// encryptionTimeout bounds the wait for a stream to be ACTIVE before and
// after its encryption starts (AWS takes seconds).
const encryptionTimeout = 2 * time.Minute

// KinesisEncryptionAPI is what encryptStream needs; *kinesis.Client
// implements it.
type KinesisEncryptionAPI interface {
	DescribeStreamSummary(ctx context.Context, in *kinesis.DescribeStreamSummaryInput, optFns ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error)
	StartStreamEncryption(ctx context.Context, in *kinesis.StartStreamEncryptionInput, optFns ...func(*kinesis.Options)) (*kinesis.StartStreamEncryptionOutput, error)
}

// SNSEncryptionAPI is what encryptTopic needs; *sns.Client implements it.
type SNSEncryptionAPI interface {
	GetTopicAttributes(ctx context.Context, in *awssns.GetTopicAttributesInput, optFns ...func(*awssns.Options)) (*awssns.GetTopicAttributesOutput, error)
	SetTopicAttributes(ctx context.Context, in *awssns.SetTopicAttributesInput, optFns ...func(*awssns.Options)) (*awssns.SetTopicAttributesOutput, error)
}

// encryptStream makes sure the stream is encrypted with KMS: a stream
// already encrypted (with StreamKMSKey or a key of its owner's choosing) is
// left as it is; otherwise it starts encryption with StreamKMSKey and waits
// until the stream is ACTIVE again. An endpoint that does not know
// StartStreamEncryption (kinesalite) gets a warning on out, not an error.
func encryptStream(ctx context.Context, k KinesisEncryptionAPI, name string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, encryptionTimeout)
	defer cancel()
	sum, err := waitStreamActive(ctx, k, name)
	if err != nil {
		return err
	}
	if sum.EncryptionType == ktypes.EncryptionTypeKms {
		if key := aws.ToString(sum.KeyId); key != StreamKMSKey {
			fmt.Fprintf(out, "    note: %s is encrypted with KMS key %s, not %s; left as it is\n", name, key, StreamKMSKey)
		}
		return nil
	}
	_, err = k.StartStreamEncryption(ctx, &kinesis.StartStreamEncryptionInput{
		StreamName:     aws.String(name),
		EncryptionType: ktypes.EncryptionTypeKms,
		KeyId:          aws.String(StreamKMSKey),
	})
	if unsupported(err) {
		fmt.Fprintf(out, "    warning: %s: the endpoint does not support stream encryption (an emulator?); not encrypted\n", name)
		return nil
	}
	if err != nil {
		return fmt.Errorf("kinesis start stream encryption %s: %w", name, err)
	}
	sum, err = waitStreamActive(ctx, k, name)
	if err != nil {
		return err
	}
	if sum.EncryptionType != ktypes.EncryptionTypeKms {
		return fmt.Errorf("kinesis stream %s: encryption %q after StartStreamEncryption, want KMS", name, sum.EncryptionType)
	}
	return nil
}

// waitStreamActive polls the stream until it is ACTIVE (encryption cannot
// start while it is CREATING or UPDATING) and returns its summary.
func waitStreamActive(ctx context.Context, k KinesisEncryptionAPI, name string) (*ktypes.StreamDescriptionSummary, error) {
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		out, err := k.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
		if err != nil {
			return nil, fmt.Errorf("kinesis describe stream %s: %w", name, err)
		}
		sum := out.StreamDescriptionSummary
		if sum == nil {
			return nil, fmt.Errorf("kinesis describe stream %s: no description in the answer", name)
		}
		switch sum.StreamStatus {
		case ktypes.StreamStatusActive:
			return sum, nil
		case ktypes.StreamStatusDeleting:
			return nil, fmt.Errorf("kinesis stream %s is being deleted", name)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("kinesis stream %s still %s: %w", name, sum.StreamStatus, ctx.Err())
		case <-time.After(wait):
		}
	}
}

// encryptTopic makes sure the topic has a KMS key: one that has any (its
// owner's choice) is left as it is; otherwise it gets TopicKMSKey. An
// endpoint that rejects the call as unknown, or accepts it without keeping
// the key (an emulator), gets a warning on out, not an error.
func encryptTopic(ctx context.Context, s SNSEncryptionAPI, arn string, out io.Writer) error {
	key, err := topicKey(ctx, s, arn)
	if err != nil {
		return err
	}
	if key != "" {
		if key != TopicKMSKey {
			fmt.Fprintf(out, "    note: %s is encrypted with KMS key %s, not %s; left as it is\n", arn, key, TopicKMSKey)
		}
		return nil
	}
	_, err = s.SetTopicAttributes(ctx, &awssns.SetTopicAttributesInput{
		TopicArn:       aws.String(arn),
		AttributeName:  aws.String(topicKMSAttribute),
		AttributeValue: aws.String(TopicKMSKey),
	})
	if unsupported(err) {
		fmt.Fprintf(out, "    warning: %s: the endpoint does not support topic encryption (an emulator?); not encrypted\n", arn)
		return nil
	}
	if err != nil {
		return fmt.Errorf("sns set %s of %s: %w", topicKMSAttribute, arn, err)
	}
	if key, err = topicKey(ctx, s, arn); err != nil {
		return err
	}
	if key != TopicKMSKey {
		fmt.Fprintf(out, "    warning: %s: the endpoint accepted the KMS key but reports %q (an emulator?); not encrypted\n", arn, key)
	}
	return nil
}

func topicKey(ctx context.Context, s SNSEncryptionAPI, arn string) (string, error) {
	attrs, err := s.GetTopicAttributes(ctx, &awssns.GetTopicAttributesInput{TopicArn: aws.String(arn)})
	if err != nil {
		return "", fmt.Errorf("sns get attributes of %s: %w", arn, err)
	}
	return attrs.Attributes[topicKMSAttribute], nil
}

// unsupported reports whether err says the endpoint does not implement the
// operation, as the emulators answer what they lack.
func unsupported(err error) bool {
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode() {
	case "UnknownOperationException", "InvalidAction", "NotImplemented":
		return true
	}
	return false
}
